"""Reproductions, on a tiny trained model, of runs that used to go silently wrong: a curve set killed between
its writes, curves of a copied results folder, a landing interrupted before processResults, a model id of an
older version holding a '-', the summaries' record of the runs they show."""
import json
import os
import shutil

import numpy as np
import pytest

import processResults
from brnpa.runs import lifecycle
import trainVal
from helpers import Crash, crash_at
from brnpa.core.model_ids import model_options

CNN = ["--model_id", "cnn", *model_options("cnn"), "--optuna", "False"]


@pytest.fixture
def trained(tiny_config, tiny_synth, tmp_path):
    """(argv common to the commands, results dir) after training the tiny cnn and its DAUC on 4 images."""
    results = tmp_path / "results"
    common = ["-c", str(tiny_config), "--data_dir", tiny_synth, "--results_dir", str(results), *CNN]
    trainVal.main(common)
    trainVal.main(common + ["--attention_metrics", "Del"])
    return common, results


def curve_set_state(folder):
    """None when the set has no .json (incomplete: no reader takes it), else its image count, after checking
    that its five files agree with each other and with the .json."""
    meta_path = folder / "attMetrDel_cnn.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    arrays = [np.load(folder / f"attMetrDel_cnn{suffix}.npy") for suffix in ("", "_imgInds", "_preds", "_targets")]
    assert all(len(array) == meta["image_nb"] for array in arrays), [len(array) for array in arrays]
    assert arrays[1].tolist() == meta["signature"]["images"]
    return meta["image_nb"]


def test_a_curve_set_killed_between_its_writes_is_never_mixed(trained, monkeypatch, capsys):
    """Kill the curve task at every file operation of a rerun (a write, the landing record, a move): the
    folder holds the old complete set (4 images) or no complete set, never curves of 6 images beside
    metadata of 4; the next run finishes the new set, and says 'already computed' only then."""
    common, results = trained
    folder = results / "e2e"
    rerun = common + ["--attention_metrics", "Del", "--att_metrics_img_nb", "6", "--overwrite", "True"]
    kill_at = 1
    while True:
        crash_at(monkeypatch, kill_at)
        try:
            trainVal.main(rerun if kill_at == 1 else rerun[:-2])  # later reruns resume
        except Crash:
            monkeypatch.undo()
            assert curve_set_state(folder) in (4, None), kill_at
            kill_at += 1
            continue
        monkeypatch.undo()
        break
    assert kill_at > 6  # every staged write and landing move was a kill point
    assert curve_set_state(folder) == 6
    capsys.readouterr()
    trainVal.main(rerun[:-2])
    assert "already computed" in capsys.readouterr().out


def test_curves_of_a_copied_results_folder_go_to_the_named_folder(trained, tiny_config, tiny_synth, tmp_path):
    common, results = trained
    shutil.copytree(results / "e2e", results / "copy")
    os.remove(results / "copy" / "attMetrDel_cnn.json")
    before = sorted(os.listdir(results / "e2e"))
    trainVal.main(common + ["--exp_id", "copy", "--attention_metrics", "Add"])
    assert (results / "copy" / "attMetrAdd_cnn.npy").exists()
    assert sorted(os.listdir(results / "e2e")) == before  # nothing written to the experiment it came from
    shutil.move(results / "copy", results / "renamed")
    message = None
    try:
        trainVal.main(common + ["--exp_id", "copy", "--attention_metrics", "Add"])
    except SystemExit as exit_:
        message = str(exit_.code)
    assert message.startswith("error: ") and "no finished run" in message and "\n" not in message


def test_process_results_names_an_interrupted_landing(trained, capsys):
    """A model whose landing stopped after its old test CSV went has no CSV: it used to vanish from the table."""
    common, results = trained
    folder = results / "e2e"
    trainVal.main(common + ["--model_id", "other"])
    stage = lifecycle.model_stage(str(folder), "other")
    stage.fresh()
    for name in os.listdir(folder):  # stage a copy of its files, and stop the landing after its first step
        if name.startswith(("modelother", "attMapsother", "normother", "other.")):
            shutil.copy(folder / name, folder / ".other.staging" / name)
    os.remove(folder / next(name for name in os.listdir(folder) if name.startswith("modelother_epoch")))
    (folder / ".other.staging" / lifecycle.LANDING).write_text(json.dumps({"names": os.listdir(folder / ".other.staging")}))
    os.remove(folder / "attMetrDel_cnn.json")  # and a curve set without its metadata
    capsys.readouterr()
    processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("incomplete in e2e:")]
    assert len(notes) == 2, out
    assert "model 'other'" in notes[0] and f"CONFIG={common[1]} ./train.sh other" not in notes[0]
    assert "python3 trainVal.py -c" in notes[0] and "--model_id other" in notes[0]
    assert "deletion curves of cnn" in notes[1] and "./get_dauc_scores.sh cnn" in notes[1]
    trainVal.main(common + ["--model_id", "other"])  # the command finishes the landing
    assert lifecycle.LandedRun(str(folder), "other").run_id


def test_process_results_reads_a_model_id_with_a_dash_of_an_older_version(trained, capsys):
    """Files of a model 'my-cnn' (accepted by older versions) are that model's, not a method 'cnn' of 'my'."""
    _, results = trained
    folder = results / "e2e"
    for name in os.listdir(folder):
        if name.startswith(("modelcnn_", "attMapscnn_", "normcnn_", "cnn.ini")):
            shutil.copy(folder / name, folder / name.replace("cnn", "my-cnn", 1))
    processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "my-cnn" in rows and "cnn" in rows


def test_summaries_say_which_runs_they_show(trained, capsys):
    common, results = trained
    processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    run_id = lifecycle.LandedRun(str(results / "e2e"), "cnn").run_id
    for folder in (results / "e2e", results / "vis" / "e2e"):
        record = json.loads((folder / "summary_runs.json").read_text())
        assert record["runs"] == {"e2e": {"cnn": run_id}}
    trainVal.main(common + ["--overwrite", "True", "--lr", "0.002"])
    assert lifecycle.LandedRun(str(results / "e2e"), "cnn").run_id != run_id  # the record now says they are stale
