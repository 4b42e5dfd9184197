"""The seed loop behind demo.sh and paper_table.sh: same seed, same table; finished work skipped; the
aggregate over seeds equals means computed here from the per-seed files; high-res demo maps."""
import csv
import glob
import os

import numpy as np
import pytest
from scipy import stats

import run_models
from helpers import REPO_ROOT
from model_ids import MODEL_IDS

ALL_MODELS = list(MODEL_IDS)


def run_seeds(capsys, monkeypatch, config, data, results, models, seeds, *extra):
    """run_models.main as paper_table.sh calls it; returns (the printed lines without the timing lines, with
    the results folder written RESULTS, and the whole output)."""
    monkeypatch.setenv("CONFIG", str(config))
    capsys.readouterr()
    run_models.main(["--models", *models, "--seeds", str(seeds), "--data_dir", data, "--results_dir", str(results),
                     "--vis_dir", str(results / "vis"), *extra])
    out = capsys.readouterr().out
    return [line.replace(str(results), "RESULTS") for line in out.splitlines() if not line.startswith("== ")], out


@pytest.fixture
def config(tiny_config):
    return tiny_config


def test_same_seed_same_table(tiny_synth, config, tmp_path, capsys, monkeypatch):
    models = ["br_npa_low_res", "cnn"]
    first, _ = run_seeds(capsys, monkeypatch, config, tiny_synth, tmp_path / "a", models, 1, "--exp_id", "demo")
    second, _ = run_seeds(capsys, monkeypatch, config, tiny_synth, tmp_path / "b", models, 1, "--exp_id", "demo")
    table = [line for line in first if line.startswith(tuple(models))]
    assert len(table) == 2 and first == second


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
    _, out = run_seeds(capsys, monkeypatch, config, tiny_synth, results, ALL_MODELS, 2)
    assert "mean and 95% interval over 2 experiments" in out
    before = {path: os.path.getmtime(path) for path in glob.glob(str(results / "synth_s*" / "*"))}
    _, again = run_seeds(capsys, monkeypatch, config, tiny_synth, results, ALL_MODELS, 2)
    assert again.count("already has a finished run") == 2 * len(ALL_MODELS)
    assert again.count("already computed") == 2 * 2 * len(ALL_MODELS)
    assert "epoch 1:" not in again
    after = {path: os.path.getmtime(path) for path in glob.glob(str(results / "synth_s*" / "*"))
             if not path.endswith(".csv")}  # processResults rewrites its per-seed CSVs
    assert after == {path: time for path, time in before.items() if not path.endswith(".csv")}
    with open(results / "synth_s1+synth_s2" / "summary.csv") as file:
        summary = {row["model_id"]: row for row in csv.DictReader(file)}
    assert sorted(summary) == sorted(ALL_MODELS)
    t = stats.t.ppf(0.975, 1)
    for model_id in ALL_MODELS:
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


def test_high_res_demo_maps_are_16x16(tmp_path, capsys, monkeypatch):
    """The demo config's distilled high-res model saves (N, 3, 16, 16) maps on 64 px images."""
    from data.synthetic import make_synthetic
    data = tmp_path / "data"
    make_synthetic(str(data), "synth", class_nb=3, train_per_class=8, test_per_class=2, img_size=64, seed=5)
    results = tmp_path / "results"
    run_seeds(capsys, monkeypatch, os.path.join(REPO_ROOT, "config_demo.config"), str(data), results,
              ["br_npa_low_res", "br_npa_high_res_distill"], 1, "--exp_id", "demo", "--class_nb", "3", "--epochs",
              "1", "--train_prop", "0.5")
    maps = glob.glob(str(results / "demo" / "attMapsbr_npa_high_res_distill_epoch*_test.npy"))
    assert len(maps) == 1 and np.load(maps[0]).shape == (6, 3, 16, 16)
    assert np.load(results / "demo" / "attMetrDel_br_npa_high_res_distill.npy").shape == (6, 16, 2)
