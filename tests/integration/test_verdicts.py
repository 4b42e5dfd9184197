"""Verdicts that used to be wrong without a sign, hints that led nowhere and sets lost without asking, each
reproduced on a tiny trained CNN with deletion curves of 4 of its 15 test images (one training, copied for
each test)."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

import processResults
import trainVal
from brnpa.core.model_ids import model_options
from helpers import post_hoc_maps_of_set

CNN = ["--model_id", "cnn", *model_options("cnn"), "--optuna", "False"]


@pytest.fixture(scope="module")
def trained_once(tiny_synth, tmp_path_factory):
    """A results folder with the tiny cnn and its deletion curves on 4 images (seed 1), made once."""
    root = tmp_path_factory.mktemp("verdicts")
    config = root / "tiny.config"
    from helpers import TINY_CONFIG
    config.write_text(TINY_CONFIG)
    common = ["-c", str(config), "--data_dir", tiny_synth, "--results_dir", str(root / "results"), *CNN]
    trainVal.main(common)
    trainVal.main(common + ["--attention_metrics", "Del"])
    return common, root / "results"


@pytest.fixture
def trained(trained_once, tmp_path):
    """(argv common to the commands, results dir) of a copy of trained_once's results for this test."""
    common, results = trained_once
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    return [word if word != str(results) else str(copy) for word in common], copy


def error_of(main, argv):
    """The one-line message a main ends with (SystemExit), or a failure if it ends otherwise."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    message = str(exit_.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def process(results, *exp_ids, more=()):
    return ["--exp_id", *exp_ids, "--results_dir", str(results), "--vis_dir", str(results / "vis"), *more]


def read_row(path, model_id):
    with open(path, newline="") as file:
        return next(row for row in csv.reader(file) if row[0] == model_id)[1:]


def test_a_copied_experiment_is_not_another_seed(trained):
    _, results = trained
    shutil.copytree(results / "e2e", results / "e2e_copy")
    message = error_of(processResults.main, process(results, "e2e", "e2e_copy"))
    assert "e2e and e2e_copy hold the same run of 'cnn'" in message
    assert "more than once" in error_of(processResults.main, process(results, "e2e", "e2e"))
    assert not (results / "e2e+e2e_copy").exists()  # refused before anything was written


def test_a_non_finite_value_is_named_and_left_out_of_that_image_scores(trained, capsys):
    """The image's DAUC and DC are left out (nan in the per-image CSVs, not 0) and the means are over the other
    images, as computed from the values before the nan was planted; a note names the image."""
    _, results = trained
    folder = results / "e2e"
    processResults.main(process(results, "e2e"))
    before = {key: [float(v) for v in read_row(folder / f"attMetrics_{key}_pop.csv", "cnn")] for key in ("Del", "DC")}
    curves = np.load(folder / "attMetrDel_cnn.npy")
    curves[1, 2, 1] = np.nan
    np.save(folder / "attMetrDel_cnn.npy", curves)
    test_index = int(np.load(folder / "attMetrDel_cnn_imgInds.npy")[1])
    capsys.readouterr()
    processResults.main(process(results, "e2e"))
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if "non-finite" in line)
    assert f"test images {test_index}:" in note and "--overwrite True" in note
    for key in ("Del", "DC"):
        after = [float(v) for v in read_row(folder / f"attMetrics_{key}_pop.csv", "cnn")]
        assert np.isnan(after[1]) and np.allclose(np.delete(after, 1), np.delete(before[key], 1))
        mean = float(read_row(folder / f"attMetrics_{key}.csv", "cnn")[0])
        assert mean == pytest.approx(np.mean(np.delete(before[key], 1)))
    table_row = next(line for line in out.splitlines() if line.startswith("cnn "))
    assert " 3 " in f" {table_row} "  # n: 3 images


def test_the_seed_of_an_evaluation_makes_another_set(trained, capsys):
    """--seed picks the images (and seeds the draws) of a set: it is not ignored (the set is computed again
    with it, not found 'already computed'); an option the trained run fixes is refused."""
    common, results = trained
    folder = results / "e2e"
    trainVal.main(common + ["--attention_metrics", "Del", "--seed", "5"])
    expected = np.sort(np.random.default_rng(5).choice(15, size=4, replace=False))
    assert np.load(folder / "attMetrDel_cnn_imgInds.npy").tolist() == expected.tolist()
    assert json.loads((folder / "attMetrDel_cnn.json").read_text())["signature"]["seed"] == 5
    capsys.readouterr()
    trainVal.main(common + ["--attention_metrics", "Del", "--seed", "5"])
    assert "already computed" in capsys.readouterr().out
    message = error_of(trainVal.main, common + ["--attention_metrics", "Del", "--img_size", "64", "--lr", "0.5"])
    assert "--img_size 64 (trained: 32), --lr 0.5 (trained: 0.003)" in message and "fixes these" in message


def test_the_random_floor_seed_makes_another_set(trained):
    common, results = trained
    floor = common + ["--attention_metrics", "Del", "--att_metrics_post_hoc", "random", "--att_metrics_img_nb", "-1"]
    trainVal.main(floor)
    first = post_hoc_maps_of_set(results / "e2e", "cnn-random")
    trainVal.main(floor + ["--seed", "5"])
    second = post_hoc_maps_of_set(results / "e2e", "cnn-random")
    assert first.shape == second.shape and not np.array_equal(first, second)


def test_a_smaller_rerun_keeps_the_larger_set(trained):
    common, results = trained
    message = error_of(trainVal.main, common + ["--attention_metrics", "Del", "--att_metrics_img_nb", "2"])
    assert "cover 4 test images (seed 1)" in message and "--overwrite True" in message
    assert len(np.load(results / "e2e" / "attMetrDel_cnn.npy")) == 4
    trainVal.main(common + ["--attention_metrics", "Del", "--att_metrics_img_nb", "2", "--overwrite", "True"])
    assert len(np.load(results / "e2e" / "attMetrDel_cnn.npy")) == 2


def test_a_set_under_another_name_or_without_its_indices_is_refused(trained):
    _, results = trained
    folder = results / "e2e"
    for name in os.listdir(folder):
        if name.startswith("attMetrDel_cnn"):
            shutil.copy(folder / name, folder / name.replace("attMetrDel_cnn", "attMetrDel_cnn-center"))
    message = error_of(processResults.main, process(results, "e2e"))
    assert "Del set of cnn, but they are named as the Del set of cnn-center" in message
    for name in os.listdir(folder):
        if name.startswith("attMetrDel_cnn-center"):
            os.remove(folder / name)
    os.remove(folder / "attMetrDel_cnn_imgInds.npy")
    message = error_of(processResults.main, process(results, "e2e"))
    assert "attMetrDel_cnn_imgInds.npy" in message and "--overwrite True" in message
    assert not (folder / "attMetrics_Del.csv").exists()  # refused before any CSV was written


def test_hints_name_the_folder_processed_and_work(trained, capsys):
    """A truncated set in a copied experiment: the hint names the copy and --overwrite True, and running it
    repairs the set there (the original is left as it was)."""
    common, results = trained
    shutil.copytree(results / "e2e", results / "moved")
    path = results / "moved" / "attMetrDel_cnn.npy"
    path.write_bytes(path.read_bytes()[:100])
    message = error_of(processResults.main, process(results, "moved"))
    hint = message.split("remake it with ", 1)[1].rstrip(")")
    assert "--exp_id moved" in hint and hint.endswith("--overwrite True") and "e2e" not in hint
    original = sorted(os.listdir(results / "e2e"))
    trainVal.main(common + hint.split("./get_dauc_scores.sh cnn", 1)[1].split())
    processResults.main(process(results, "moved"))
    assert sorted(os.listdir(results / "e2e")) == original


def test_a_stray_file_is_named_as_such(trained):
    _, results = trained
    shutil.copy(results / "e2e" / "attMetrDel_cnn.npy", results / "e2e" / "attMetrDel_cnn-bogus.npy")
    message = error_of(processResults.main, process(results, "e2e"))
    assert "'bogus' is not a post-hoc method" in message and "train" not in message


@pytest.mark.parametrize("option, value, expected", [
    ("--tiny_clean_score", "-1", "finite number, 0 or more"), ("--tiny_clean_score", "nan", "finite number"),
    ("--resamples", "1", "at least 40")])
def test_process_results_options_are_checked_in_one_line(trained, option, value, expected):
    _, results = trained
    assert expected in error_of(processResults.main, process(results, "e2e", more=(option, value)))


def test_process_results_option_errors_are_one_line(trained, capsys):
    """argparse's errors too: one line, as trainVal.py's, not the usage block."""
    _, results = trained
    with pytest.raises(SystemExit):
        processResults.main(process(results, "e2e", more=("--test", "bogus")))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "invalid choice" in lines[0]


def test_center_sigma_inf_is_refused(trained, capsys):
    """(A finite width that still gives a constant map: tests/unit/test_small_rules.py.)"""
    common, _ = trained
    center = common + ["--attention_metrics", "Del", "--att_metrics_post_hoc", "center"]
    with pytest.raises(SystemExit):
        trainVal.main(center + ["--center_sigma", "inf"])
    assert "must be a positive finite number, got inf" in capsys.readouterr().err


def test_a_read_only_experiment_is_one_line(trained):
    """An experiment folder the system refuses to write (made immutable: root writes through file modes): the
    curve script and processResults end with one line naming the folder's file, not a traceback."""
    import subprocess
    from helpers import skip_unless_ci
    common, results = trained
    folder = results / "e2e"
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        skip_unless_ci("chattr cannot make a folder immutable here")
    try:
        message = error_of(trainVal.main, common + ["--attention_metrics", "Add"])
        assert str(folder) in message and "permissions" in message
        message = error_of(processResults.main, process(results, "e2e"))
        assert str(folder) in message and "permissions" in message
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_curve_on_maps_of_one_cell_is_refused_before_anything_is_written(tiny_config, tiny_synth, tmp_path):
    """A CNN trained at 16 px has 1 x 1 maps: its deletion curve would be one point (DAUC 0, the best there is),
    its ROAD steps would all remove the one cell. Both are one line, and no set is written."""
    results = tmp_path / "results"
    common = ["-c", str(tiny_config), "--data_dir", tiny_synth, "--results_dir", str(results), *CNN,
              "--img_size", "16"]
    trainVal.main(common)
    deletion = error_of(trainVal.main, common + ["--attention_metrics", "Del"])
    assert "1 x 1 maps: its curve would have 1 point" in deletion
    assert "needs maps of 10 cells" in error_of(trainVal.main, common + ["--attention_metrics", "ROADMoRF"])
    assert not [name for name in os.listdir(results / "e2e") if name.startswith("attMetr")]


def test_two_runs_with_identical_options_are_not_two_seeds(trained):
    """The same options and seed trained again under another exp_id: one configuration twice, refused before
    anything is written; trained with another seed, it is accepted as a second seed."""
    common, results = trained
    trainVal.main(common + ["--exp_id", "twice"])
    message = error_of(processResults.main, process(results, "e2e", "twice"))
    assert "identical options, seed 1 included" in message
    assert not (results / "e2e+twice").exists()
    trainVal.main(common + ["--exp_id", "seed2", "--seed", "2"])
    processResults.main(process(results, "e2e", "seed2"))
    assert (results / "e2e+seed2" / "summary.csv").exists()


def test_a_post_hoc_source_computes_its_maps_once_per_configuration(trained, capsys):
    """The curve and sanity tasks on the same images share one computation of a post-hoc source's maps (the
    sanity task's options are not part of what defines them); another value of the source's option computes
    and keeps maps of its own, the first ones untouched, and processResults names the mix in its row."""
    common, results = trained
    folder = results / "e2e"

    def maps_files():
        return sorted(name for name in os.listdir(folder) if name.startswith("attMapscnn-integratedgradients"))
    trainVal.main(common + ["--attention_metrics", "Del", "--att_metrics_post_hoc", "integratedgradients",
                            "--ig_steps", "2"])
    first = maps_files()
    assert len(first) == 2  # the maps and their .json
    written = {name: (folder / name).stat().st_mtime_ns for name in first}
    trainVal.main(common + ["--attention_metrics", "Sanity", "--att_metrics_post_hoc", "integratedgradients",
                            "--ig_steps", "2", "--sanity_stages", "classifier"])
    assert maps_files() == first and all((folder / name).stat().st_mtime_ns == mtime for name, mtime in written.items())
    trainVal.main(common + ["--attention_metrics", "Add", "--att_metrics_post_hoc", "integratedgradients",
                            "--ig_steps", "3"])
    assert len(maps_files()) == 4 and all((folder / name).stat().st_mtime_ns == mtime
                                          for name, mtime in written.items())
    capsys.readouterr()
    processResults.main(process(results, "e2e"))
    out = capsys.readouterr().out
    assert ("the sets of cnn-integratedgradients were computed with different options of integratedgradients "
            "(--ig_steps 2 for Del, Sanity; --ig_steps 3 for Add)") in out


def test_a_retraining_names_the_sets_it_removes(trained, capsys):
    """A change of a run-defining option trains again and names the sets of the old run that go."""
    common, results = trained
    assert (results / "e2e" / "attMetrDel_cnn.json").exists()
    capsys.readouterr()
    trainVal.main(common + ["--lr", "0.004"])
    err = capsys.readouterr().err
    assert "'cnn' is trained again (other values of lr): its 1 sets of scores computed from run" in err
    assert "(attMetrDel_cnn) are removed when the new run lands" in err
    assert not (results / "e2e" / "attMetrDel_cnn.json").exists()


def test_after_a_kill_the_hint_resumes_the_same_set_and_another_set_says_it_drops_the_progress(trained, monkeypatch,
                                                                                                capsys):
    """Insertion curves of 6 images, killed after their first progress save: processResults' hint names the 6
    images (not the run's default 4) and says it resumes; following it resumes. A command for another size says
    that it drops the saved progress, and why."""
    from brnpa.core import files
    from helpers import Crash
    common, results = trained
    insertion = common + ["--attention_metrics", "Add", "--att_metrics_img_nb", "6", "--att_metrics_batch_size", "1"]
    real_save = files.atomic_save_torch

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Crash("killed after the first progress save")
    monkeypatch.setattr(files, "atomic_save_torch", save_then_crash)
    with pytest.raises(Crash):
        trainVal.main(insertion)
    monkeypatch.setattr(files, "atomic_save_torch", real_save)
    capsys.readouterr()
    processResults.main(process(results, "e2e"))
    hint = next(line for line in capsys.readouterr().out.splitlines() if "IAUC, IC of cnn:" in line)
    assert "--att_metrics_img_nb 6 --att_metrics_batch_size 1" in hint and "resumes" in hint and "6 images" in hint
    trainVal.main(insertion)
    assert "resuming the insertion curves of cnn after 1 of 6 images" in capsys.readouterr().err
    with pytest.raises(Crash):
        monkeypatch.setattr(files, "atomic_save_torch", save_then_crash)
        trainVal.main(insertion + ["--overwrite", "True"])
    monkeypatch.setattr(files, "atomic_save_torch", real_save)
    capsys.readouterr()
    trainVal.main(common + ["--attention_metrics", "Add", "--att_metrics_batch_size", "1", "--overwrite", "True"])
    assert "is dropped (6 images then, 4 now)" in capsys.readouterr().err


def test_a_models_own_maps_scored_as_precomputed_maps_give_the_same_curves(trained, capsys):
    """The CNN's own saliency maps of every test image, exported to one .npy (N, h, w) in test order and scored
    as --att_metrics_post_hoc maps.own, give deletion and insertion curves equal bit for bit to its own-maps
    sets, and a row of their own in processResults. A wrong count, a wrong shape or the sanity task are one line,
    and write nothing."""
    from brnpa.metrics.perturbation import saliencies_from_maps
    from brnpa.models.heads import HEADS
    common, results = trained
    folder = results / "e2e"
    att_maps = np.load(next(folder.glob("attMapscnn_epoch*_test.npy")))
    norms = np.load(next(folder.glob("normcnn_epoch*_test.npy")))
    own = np.stack([saliency.numpy() for saliency in saliencies_from_maps(att_maps, norms, HEADS["cnn"],
                                                                           range(len(att_maps)))])
    np.save(folder.parent / "own.npy", own)
    precomputed = ["--att_metrics_post_hoc", "maps.own", "--maps", str(folder.parent / "own.npy")]
    trainVal.main(common + ["--attention_metrics", "Add"])
    for key in ("Del", "Add"):
        trainVal.main(common + ["--attention_metrics", key, *precomputed])
        for suffix in ("", "_imgInds", "_stepSaliency", "_startScores"):
            assert np.array_equal(np.load(folder / f"attMetr{key}_cnn-maps.own{suffix}.npy"),
                                  np.load(folder / f"attMetr{key}_cnn{suffix}.npy"))
    # the same maps as a folder of one .npy per test image, at its path in the test folder (listed here in test
    # order: sorted classes, then sorted files)
    data_dir = common[common.index("--data_dir") + 1]
    test_folder = os.path.join(data_dir, "tiny_test")
    test_files = [os.path.join(name, file) for name in sorted(os.listdir(test_folder))
                  for file in sorted(os.listdir(os.path.join(test_folder, name)))]
    for index, test_file in enumerate(test_files):
        os.makedirs(folder.parent / "own_maps" / os.path.dirname(test_file), exist_ok=True)
        np.save(folder.parent / "own_maps" / (os.path.splitext(test_file)[0] + ".npy"), own[index])
    trainVal.main(common + ["--attention_metrics", "Del", "--att_metrics_post_hoc", "maps.folder", "--maps",
                            str(folder.parent / "own_maps")])
    assert np.array_equal(np.load(folder / "attMetrDel_cnn-maps.folder.npy"), np.load(folder / "attMetrDel_cnn.npy"))
    capsys.readouterr()
    processResults.main(process(results, "e2e"))
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("cnn ", "cnn-maps.own"))]
    # the model group: the same accuracy and n (the sparsity of post-hoc maps is computed without the norm); the
    # faithfulness group: the same DAUC, IAUC, DC and IC, intervals included
    assert [rows[0][1], rows[0][3]] == [rows[1][1], rows[1][3]] and rows[2][1:] == rows[3][1:]
    np.save(folder.parent / "short.npy", own[:-1])
    np.save(folder.parent / "flat.npy", own.reshape(len(own), -1))
    with_nan = own.copy()
    with_nan[3, 0, 0] = np.nan
    np.save(folder.parent / "nan.npy", with_nan)
    before = sorted(os.listdir(folder))
    os.remove(folder.parent / "own_maps" / (os.path.splitext(test_files[2])[0] + ".npy"))
    for path, expected in (("short.npy", f"holds {len(own) - 1} maps but the test folder has {len(own)} images"),
                           ("flat.npy", "expected numbers (N, h, w)"),
                           ("nan.npy", "holds a nan or an inf in the maps of test images 3"),
                           ("own_maps", f"has no map for test image {test_files[2]}")):
        message = error_of(trainVal.main, common + ["--attention_metrics", "Del", "--att_metrics_post_hoc",
                                                    "maps.other", "--maps", str(folder.parent / path)])
        assert expected in message
    assert "the sanity checks need maps computed again" in error_of(
        trainVal.main, common + ["--attention_metrics", "Sanity", *precomputed])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        trainVal.main(common + ["--att_metrics_post_hoc", "maps.a-b"])
    assert "optionally followed by .LABEL, got maps.a-b" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == before


def test_every_per_image_value_is_in_one_long_table(trained):
    """scores_long.csv: pandas reads it in one line; the DAUC of each image is its curve's area recomputed here
    (trapezoid rule over x = 1 - minmax(cells left)), keyed by test index."""
    import pandas
    _, results = trained
    processResults.main(process(results, "e2e"))
    table = pandas.read_csv(results / "e2e" / "scores_long.csv")
    assert list(table.columns) == ["image", "model", "source", "score", "value"]
    dauc = table[(table.score == "DAUC") & (table.source == "cnn")].set_index("image").value
    curves = np.load(results / "e2e" / "attMetrDel_cnn.npy")
    for index, curve in zip(np.load(results / "e2e" / "attMetrDel_cnn_imgInds.npy"), curves):
        left = curve[:, 0]
        x = 1 - (left - left.min()) / (left.max() - left.min())
        assert dauc[int(index)] == pytest.approx(np.trapezoid(curve[:, 1], x), abs=1e-12)
    assert set(table.model) == {"cnn"} and len(dauc) == len(curves)
