"""The seed loop behind demo.sh and paper_table.sh: same seed, same table; finished work skipped; the
aggregate over seeds equals means computed here from the per-seed files; high-res demo maps."""
import csv
import glob
import os

import numpy as np
import pytest
from scipy import stats

import run_models
from brnpa.analysis.tables import COLUMN_GROUPS

# the paper-table test: a teacher and its student, two ablations (the auxiliary heads add columns); the CNN is
# in the other tests of this file and of test_end_to_end.py
TABLE_MODELS = ["br_npa_low_res", "br_npa_high_res_distill", "br_npa_high_res_auxiliary_heads",
                "br_npa_high_res_random_vectors_no_refining"]


def run_seeds(capsys, monkeypatch, config, data, results, models, seeds, *extra):
    """run_models.main as paper_table.sh calls it; returns (the printed lines without the timing lines, with
    the results folder written RESULTS, and the whole output)."""
    monkeypatch.setenv("CONFIG", str(config))
    capsys.readouterr()
    run_models.main(["--models", *models, "--seeds", str(seeds), "--data_dir", data, "--results_dir", str(results),
                     "--vis_dir", str(results / "vis"), "--tasks", *CURVE_AND_SINGLE_STEP, *extra])
    out = capsys.readouterr().out
    return [line.replace(str(results), "RESULTS") for line in out.splitlines() if not line.startswith("== ")], out


# the tasks of the tables compared here; the sanity checks have their own tests (tests/unit/test_sanity.py)
CURVE_AND_SINGLE_STEP = ["Del", "Add", "Single"]


@pytest.fixture
def config(tiny_config):
    return tiny_config


def test_same_seed_same_table(tiny_synth, config, tmp_path, capsys, monkeypatch):
    models = ["br_npa_low_res"]
    first, _ = run_seeds(capsys, monkeypatch, config, tiny_synth, tmp_path / "a", models, 1, "--exp_id", "demo")
    second, _ = run_seeds(capsys, monkeypatch, config, tiny_synth, tmp_path / "b", models, 1, "--exp_id", "demo")
    table = [line for line in first if line.startswith(tuple(models))]
    assert len(table) == len(COLUMN_GROUPS) and first == second  # its row in each group of columns


def auc(curves, metric):
    """Trapezoid AUCs of (N, T, 2) curves, recomputed here."""
    left, scores = curves[:, :, 0], curves[:, :, 1]
    if metric == "Add":
        x = 1 - left / left.max(axis=1, keepdims=True)
    else:
        low, high = left.min(axis=1, keepdims=True), left.max(axis=1, keepdims=True)
        x = 1 - (left - low) / (high - low)
    return ((x[:, 1:] - x[:, :-1]) * (scores[:, 1:] + scores[:, :-1]) / 2).sum(axis=1)


def test_paper_table_resumes_and_aggregates(tiny_synth, config, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    import brnpa.analysis.summary
    drawn = []  # (file name, title) of every p-value matrix drawn
    plot_ttest = brnpa.analysis.summary.plot_ttest
    monkeypatch.setattr(brnpa.analysis.summary, "plot_ttest", lambda path, score, sources, p, title: (
        drawn.append((os.path.basename(path), title)), plot_ttest(path, score, sources, p, title)))
    _, out = run_seeds(capsys, monkeypatch, config, tiny_synth, results, TABLE_MODELS, 2)
    assert "mean and 95% interval over 2 experiments" in out
    # over seeds the matrices are the Welch tests of the per-seed means, each drawn once (the report's per-image
    # comparisons of the first seed do not overwrite them)
    assert drawn and len({name for name, _ in drawn}) == len(drawn)
    assert all(title == "Welch t-test p-values" for _, title in drawn), drawn
    before = {path: os.path.getmtime(path) for path in glob.glob(str(results / "synth_s*" / "*"))}
    _, again = run_seeds(capsys, monkeypatch, config, tiny_synth, results, TABLE_MODELS, 2)
    assert again.count("already has a finished run") == 2 * len(TABLE_MODELS)
    assert again.count("already computed") == 2 * len(CURVE_AND_SINGLE_STEP) * len(TABLE_MODELS)
    assert "epoch 1:" not in again
    def rewritten(path):  # processResults rewrites its summaries, and the record of the runs they show
        return path.endswith((".csv", "summary_runs.json"))
    after = {path: os.path.getmtime(path) for path in glob.glob(str(results / "synth_s*" / "*")) if not rewritten(path)}
    assert after == {path: time for path, time in before.items() if not rewritten(path)}
    with open(results / "synth_s1+synth_s2" / "summary.csv") as file:
        summary = {row["model_id"]: row for row in csv.DictReader(file)}
    assert sorted(summary) == sorted(TABLE_MODELS)
    t = stats.t.ppf(0.975, 1)
    for model_id in TABLE_MODELS:
        per_seed = {"accuracy": [], "DAUC": [], "IAUC": []}
        for seed in (1, 2):
            folder = results / f"synth_s{seed}"
            test_csv = glob.glob(str(folder / f"model{model_id}_epoch*_test.csv"))[0]
            with open(test_csv) as file:
                per_seed["accuracy"].append(float(next(csv.DictReader(file))["accuracy"]))
            for metric, name in (("Del", "DAUC"), ("Add", "IAUC")):
                per_seed[name].append(auc(np.load(folder / f"attMetr{metric}_{model_id}.npy"), metric).mean())
        for name, values in per_seed.items():
            mean = (values[0] + values[1]) / 2
            half = t * abs(values[0] - values[1]) / np.sqrt(2) / np.sqrt(2)  # sample std of two values: |a-b|/sqrt(2)
            assert float(summary[model_id][f"{name}_mean"]) == pytest.approx(mean, abs=1e-9)
            assert float(summary[model_id][f"{name}_ci95"]) == pytest.approx(half, abs=1e-9)
            assert summary[model_id][f"{name}_n"] == "2"
    # every test image, and the high-res models' curves take as many steps as a low-res map has cells
    curves = np.load(results / "synth_s1" / "attMetrDel_br_npa_high_res_distill.npy")
    assert curves.shape == (15, 4, 2) and curves[:, 0, 0].tolist() == [48] * 15  # 8x8 maps, 4 steps of 16 cells


def test_demo_passes_its_extra_arguments_to_trainval(tmp_path):
    """./demo.sh OPTIONS: the options reach trainVal.py (here one it refuses, so nothing trains), also one
    that run_models.py's own --seeds would have swallowed as an abbreviation."""
    import shutil
    import subprocess
    from helpers import REPO_ROOT, script_env
    shutil.copy(os.path.join(REPO_ROOT, "demo.sh"), tmp_path / "demo.sh")
    os.symlink(os.path.join(REPO_ROOT, "run_models.py"), tmp_path / "run_models.py")
    for name in ("synth_train", "synth_test"):  # the demo's data check only looks for the folders
        os.makedirs(tmp_path / "data" / name)
    completed = subprocess.run(["bash", str(tmp_path / "demo.sh"), "--seed", "2", "--epochs", "0"],
                               capture_output=True, text=True, env=script_env(), cwd="/")
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert completed.returncode != 0 and len(errors) == 1, completed.stderr[-2000:]
    assert errors[0].startswith("error: --epochs must be at least 1, got 0")
