"""The user's commands on a tiny synthetic set: ./train.sh, ./get_dauc_scores.sh, ./get_sanity_scores.sh,
processResults.py. Where a script is not the subject, the test calls what it runs (trainVal.main) in this
process, to save the start-up of a new interpreter; every script still runs as a script in
test_unknown_model_id_lists_ids."""
import csv
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from brnpa.runs import lifecycle
import trainVal
from helpers import REPO_ROOT, TINY_CONFIG, script_env, slow_curve, transformed_test_images
from brnpa.core.model_ids import model_options


def run(command, config, data_dir, results_dir, *extra, check=True):
    env = script_env(config)
    completed = subprocess.run([os.path.join(REPO_ROOT, command), *extra, "--data_dir", data_dir,
                                "--results_dir", str(results_dir)], env=env, capture_output=True, text=True,
                               cwd="/")
    if check:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG)
    results = root / "results"
    run("train.sh", config, tiny_synth, results, "cnn", "--optuna", "False")  # the user's script
    for model_id in ("b_cnn", "br_npa_low_res"):  # what train.sh runs, in this process (no start-up cost)
        in_process(config, model_id, tiny_synth, results)
    return config, results


def in_process(config, model_id, data_dir, results, *extra):
    """trainVal.main as ./train.sh MODEL_ID (or, with --attention_metrics in extra, a task's script) calls it."""
    trainVal.main(["-c", str(config), "--model_id", model_id, *model_options(model_id), "--optuna", "False",
                   "--data_dir", data_dir, "--results_dir", str(results), *extra])


EXPECTED_MAPS = {"cnn": 1, "b_cnn": 4, "br_npa_low_res": 3}


@pytest.mark.parametrize("model_id", EXPECTED_MAPS)
def test_train_writes_seed_artifacts(trained, model_id):
    _, results = trained
    folder = results / "e2e"
    csvs = glob.glob(str(folder / f"model{model_id}_epoch*_test.csv"))
    assert len(csvs) == 1
    epoch = int(os.path.basename(csvs[0])[len(f"model{model_id}_epoch"):-len("_test.csv")])
    with open(csvs[0]) as file:
        rows = list(csv.reader(file))
    assert rows[0][:3] == ["accuracy", "loss", "sparsity"] and len(rows) == 2
    assert 0 <= float(rows[1][0]) <= 1 and 0 < float(rows[1][2]) <= 1
    maps = np.load(folder / f"attMaps{model_id}_epoch{epoch}_test.npy")
    norm = np.load(folder / f"norm{model_id}_epoch{epoch}_test.npy")
    # 15 test images, 32 px, conv1 stride 1 and low-res strides: 2x2 maps
    assert maps.dtype == np.uint8 and maps.shape == (15, EXPECTED_MAPS[model_id], 2, 2)
    assert norm.dtype == np.uint8 and norm.shape == (15, 1, 2, 2)
    assert (maps.reshape(15, -1).max(axis=1) == 255).all() and (maps.reshape(15, -1).min(axis=1) == 0).all()
    assert (folder / f"{model_id}.ini").exists() and (folder / f"model{model_id}_best.pth").exists()
    with open(folder / f"model{model_id}_metrics.csv") as file:
        epochs = list(csv.DictReader(file))
    assert len(epochs) == 2
    # the epoch in the file names is the best validation epoch (the first of equals)
    accuracies = [float(row["val_accuracy"]) for row in epochs]
    assert epoch == int(epochs[accuracies.index(max(accuracies))]["epoch"])
    check_against_the_checkpoint(folder, model_id, float(rows[1][0]), maps, norm)


def check_against_the_checkpoint(folder, model_id, accuracy, maps, norm):
    """The test accuracy and the uint8 maps and norms a model saved, recomputed here from its checkpoint on the
    test images in test order."""
    landed = lifecycle.LandedRun(str(folder), model_id)
    model, _ = landed.load_model()
    images, labels = transformed_test_images(landed.args)
    with torch.no_grad():
        result = model(images)
    assert accuracy == pytest.approx((result["output"].argmax(1) == labels).float().mean().item())
    for saved, computed in ((maps, result["att_maps"]), (norm, result["norm"])):
        flat = computed.flatten(1)
        low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        by_hand = ((flat - low) / (high - low) * 255).round().view(computed.shape).numpy()
        assert np.abs(saved.astype(float) - by_hand).max() <= 1  # float rounding of a batch of another size


def test_distilled_high_res_model(trained, tiny_synth):
    config, results = trained
    in_process(config, "br_npa_high_res_distill", tiny_synth, results)  # what ./train.sh runs
    folder = results / "e2e"
    epoch = int(glob.glob(str(folder / "modelbr_npa_high_res_distill_epoch*_test.csv"))[0].split("epoch")[-1][:-9])
    # high-res strides 2,1,1 at 32 px with conv1 stride 1: 8x8 maps
    maps = np.load(folder / f"attMapsbr_npa_high_res_distill_epoch{epoch}_test.npy")
    assert maps.shape == (15, 3, 8, 8)
    student = lifecycle.LandedRun(str(folder), "br_npa_high_res_distill")
    assert student.args.master_net and student.args.m_model_id == "br_npa_low_res"
    with open(folder / f"modelbr_npa_high_res_distill_epoch{epoch}_test.csv") as file:
        accuracy = float(list(csv.DictReader(file))[0]["accuracy"])
    check_against_the_checkpoint(folder, "br_npa_high_res_distill", accuracy, maps,
                                 np.load(folder / f"normbr_npa_high_res_distill_epoch{epoch}_test.npy"))


def test_curves_and_process_results(trained, tiny_synth, tmp_path, capsys, monkeypatch):
    config, results = trained
    run("get_dauc_scores.sh", config, tiny_synth, results, "br_npa_low_res")  # the user's script
    in_process(config, "br_npa_low_res", tiny_synth, results, "--attention_metrics", "Add")  # what the scripts run
    for model_id in ("cnn", "b_cnn"):
        in_process(config, model_id, tiny_synth, results, "--attention_metrics", "Del")
    folder = results / "e2e"
    curves = np.load(folder / "attMetrDel_br_npa_low_res.npy")
    assert curves.shape == (4, 4, 2)
    image_inds = np.load(folder / "attMetrDel_br_npa_low_res_imgInds.npy")
    assert len(image_inds) == 4
    # two curves recomputed one forward per step from the checkpoint, the image and map x norm by hand
    landed = lifecycle.LandedRun(str(folder), "br_npa_low_res")
    model, _ = landed.load_model()
    images, _ = transformed_test_images(landed.args)
    maps, norms = np.load(landed.paths["att_maps"]), np.load(landed.paths["norm"])
    preds = np.load(folder / "attMetrDel_br_npa_low_res_preds.npy")
    for k, index in enumerate(image_inds[:2]):
        with torch.no_grad():
            assert preds[k] == model(images[index:index + 1])["output"].argmax().item()
        product = torch.from_numpy(maps[index, 0].astype(np.float64) * norms[index, 0].astype(np.float64))
        saliency = (product - product.min()) / (product.max() - product.min())
        expected = slow_curve(lambda batch: model(batch)["output"], images[index], saliency, "Del", 1)
        assert np.allclose(curves[k], expected.numpy(), atol=1e-5)
    in_process(config, "br_npa_low_res", tiny_synth, results, "--attention_metrics", "Single")
    scores = np.load(folder / "attMetrSingle_br_npa_low_res.npy")
    assert scores.shape == (4, 3) and np.load(folder / "attMetrSingle_br_npa_low_res_imgInds.npy").tolist() == \
        image_inds.tolist()
    start_scores = np.load(folder / "attMetrDel_br_npa_low_res_startScores.npy")
    step_saliency = np.load(folder / "attMetrDel_br_npa_low_res_stepSaliency.npy")
    for k, index in enumerate(image_inds[:2]):
        # by hand: the clean, kept (x * m) and removed (x * (1 - m)) scores, m the saliency min-max scaled and
        # upsampled bilinearly (2x2 -> 32x32), and the start score and per-step saliency of the deletion curve
        product = torch.from_numpy(maps[index, 0].astype(np.float64) * norms[index, 0].astype(np.float64)).float()
        saliency = (product - product.min()) / (product.max() - product.min())
        mask = torch.nn.functional.interpolate(saliency[None, None], size=(32, 32), mode="bilinear")[0, 0]
        image = images[index]
        with torch.no_grad():
            probabilities = torch.softmax(model(torch.stack([image, image * mask, image * (1 - mask)]))["output"], 1)
        by_hand = probabilities[:, preds[k]].numpy()
        assert np.allclose(scores[k], by_hand, atol=1e-5) and start_scores[k] == pytest.approx(by_hand[0], abs=1e-5)
        assert sorted(step_saliency[k].tolist(), reverse=True) == step_saliency[k].tolist()
        assert step_saliency[k].sum() == pytest.approx(saliency.sum().item(), abs=1e-5)
    # processResults in this process, from another working directory (the script itself runs in
    # test_process_results_without_results)
    import processResults
    monkeypatch.chdir("/")
    capsys.readouterr()
    processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(tmp_path / "vis")])
    stdout = capsys.readouterr().out
    assert "br_npa_low_res" in stdout and "energy in part" in stdout
    # the sets a model lacks: one line each, with the command that computes them
    not_computed = [line for line in stdout.splitlines() if line.startswith("not computed in e2e: ")]
    assert any("IAUC, IC of cnn: run " in line and "./get_iauc_scores.sh cnn" in line for line in not_computed)
    assert any("AD, IIC, ADD of b_cnn: run " in line and "./get_single_step_scores.sh b_cnn" in line
               for line in not_computed)
    assert all(f"{name} {arrow}" in stdout for name, arrow in
               (("DAUC", "↓"), ("IAUC", "↑"), ("DC", "↑"), ("IC", "↑"), ("AD", "↓"), ("IIC", "↑"), ("ADD", "↑")))
    # the single-step and correlation columns, recomputed here from the saved arrays
    clean, kept, removed = scores[:, 0], scores[:, 1], scores[:, 2]
    drops = -np.diff(np.concatenate([start_scores[:, None], curves[:, :, 1]], axis=1), axis=1)
    correlations = [np.corrcoef(drops[k], step_saliency[k])[0, 1] if drops[k].std() > 0 else 0.0 for k in range(4)]
    for name, expected in (("AD", np.maximum(clean - kept, 0) / clean), ("IIC", (kept > clean).astype(float)),
                           ("ADD", (clean - removed) / clean), ("DC", np.array(correlations))):
        with open(folder / f"attMetrics_{name}_pop.csv") as file:
            rows = {row[0]: [float(value) for value in row[1:]] for row in list(csv.reader(file))[1:]}
        assert rows["br_npa_low_res"] == pytest.approx(expected.tolist(), abs=1e-9)
    for metric, model_ids in (("Del", EXPECTED_MAPS), ("Add", ["br_npa_low_res"])):
        with open(folder / f"attMetrics_{metric}.csv") as file:
            rows = {row["model_id"]: float(row["mean"]) for row in csv.DictReader(file)}
        assert sorted(rows) == sorted(model_ids)
        for model_id in model_ids:
            curves = np.load(folder / f"attMetr{metric}_{model_id}.npy")
            left, scores = curves[:, :, 0], curves[:, :, 1]
            # recomputed here: x from the cells left, trapezoid rule by hand
            low, high = left.min(axis=1, keepdims=True), left.max(axis=1, keepdims=True)
            x = 1 - (left - low) / (high - low)
            if metric == "Add":
                x = 1 - left / left.max(axis=1, keepdims=True)
            aucs = ((x[:, 1:] - x[:, :-1]) * (scores[:, 1:] + scores[:, :-1]) / 2).sum(axis=1)
            assert rows[model_id] == pytest.approx(aucs.mean(), abs=1e-9)
        # the p-values of every pair: none where one model has the score (Add: br_npa_low_res alone)
        assert (tmp_path / "vis" / "e2e" / f"ttest_{metric}.png").exists() == (len(model_ids) > 1)
    # the paired comparison of two sources, from the per-image values of the _pop.csv file and scipy
    with open(folder / "attMetrics_Del_pop.csv") as file:
        per_image = {row[0]: np.array([float(value) for value in row[1:]]) for row in list(csv.reader(file))[1:]}
    with open(folder / "compare_Del.csv") as file:
        pairs = {(row["first"], row["second"]): row for row in csv.DictReader(file)}
    assert sorted(pairs) == [("b_cnn", "br_npa_low_res"), ("b_cnn", "cnn"), ("br_npa_low_res", "cnn")]
    pair = pairs[("b_cnn", "cnn")]
    first, second = per_image["b_cnn"], per_image["cnn"]
    expected = stats.wilcoxon(first, second).pvalue if np.any(first != second) else 1.0
    assert int(pair["n"]) == len(first) and float(pair["wilcoxon_p"]) == pytest.approx(expected)
    assert float(pair["median_difference"]) == pytest.approx(np.median(first - second))
    assert "alpha" in stdout and (folder / "metric_reliability.csv").exists()


def test_sanity_script(trained, tiny_synth):
    """./get_sanity_scores.sh on a trained model: a ρ and an SSIM per image and stage, a class ρ per image (1 for
    the own maps, which ignore the class). Its columns and plot in processResults: test_report.py."""
    config, results = trained
    run("get_sanity_scores.sh", config, tiny_synth, results, "cnn", "--sanity_stages", "classifier,layer4")
    folder = results / "e2e"
    rho, ssim = np.load(folder / "attMetrSanity_cnn.npy"), np.load(folder / "attMetrSanity_cnn_mprtSsim.npy")
    assert rho.shape == ssim.shape == (4, 2) and np.all(np.abs(rho) <= 1)
    assert np.all(np.isnan(ssim))  # the tiny model's maps are 2 x 2: no SSIM window fits
    assert np.load(folder / "attMetrSanity_cnn_classRho.npy").tolist() == [1.0] * 4
    assert np.all(rho[:, 0] == 1.0)  # the CNN's map is the feature norm: the classifier does not change it


def test_road_through_the_generic_script(trained, tiny_synth, capsys):
    """./get_scores.sh ROADMoRF MODEL_ID runs a curve that has no script of its own: refused in one line on the
    tiny model's 2 x 2 maps (its steps could not perturb distinct tenths of 4 cells); on a CNN trained at 64 px,
    4 x 4 maps, 9 steps perturbing 10% to 90% of the 16 cells, rounded up: 2, 4, 5, 7, 8, 10, 12, 13, 15 cells.
    processResults shows its column, the mean of each curve's scores, with its direction and the command for
    the sets it lacks."""
    config, results = trained
    refused = run("get_scores.sh", config, tiny_synth, results, "ROADMoRF", "cnn", check=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith("error: the ROAD MoRF")
    in_process(config, "cnn", tiny_synth, results, "--exp_id", "road", "--img_size", "64")
    run("get_scores.sh", config, tiny_synth, results, "ROADMoRF", "cnn", "--exp_id", "road")
    folder = results / "road"
    curves = np.load(folder / "attMetrROADMoRF_cnn.npy")
    assert curves.shape == (4, 9, 2) and curves[0, :, 0].tolist() == [14, 12, 11, 9, 8, 6, 4, 3, 1]
    import processResults
    capsys.readouterr()
    processResults.main(["--exp_id", "road", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    stdout = capsys.readouterr().out
    with open(folder / "attMetrics_ROADMoRF.csv") as file:
        rows = {row["model_id"]: float(row["mean"]) for row in csv.DictReader(file)}
    assert rows["cnn"] == pytest.approx(curves[:, :, 1].mean(), abs=1e-9) and "ROAD MoRF ↓" in stdout
    assert any("ROAD LeRF of cnn: run " in line and "./get_scores.sh ROADLeRF cnn" in line
               for line in stdout.splitlines())
    usage = subprocess.run([os.path.join(REPO_ROOT, "get_scores.sh")], env=script_env(config), capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "usage: " in usage.stderr and "TASK MODEL_ID" in usage.stderr
    assert usage.stderr.count("\n") == 1 and "TASK is one of: Del, Add, ROADMoRF, ROADLeRF" in usage.stderr
    no_model = subprocess.run([os.path.join(REPO_ROOT, "get_scores.sh"), "ROADMoRF"], env=script_env(config),
                              capture_output=True, text=True)
    assert no_model.returncode == 2 and no_model.stderr.count("\n") == 1 and "MODEL_ID is one of: " in no_model.stderr
    unknown = subprocess.run([os.path.join(REPO_ROOT, "train.sh"), "cnnn"], env=script_env(config),
                             capture_output=True, text=True)
    assert unknown.stderr.startswith("error: unknown model id 'cnnn': one of ") and unknown.stderr.count("\n") == 1
    alone = subprocess.run([os.path.join(REPO_ROOT, "train.sh")], env=script_env(config), capture_output=True,
                           text=True)
    assert alone.stderr.startswith("usage: ") and "MODEL_ID is one of: br_npa_low_res" in alone.stderr


def test_curves_need_a_trained_model(tiny_config, tiny_synth, tmp_path):
    with pytest.raises(SystemExit) as exit_:  # what ./get_dauc_scores.sh runs, in this process
        in_process(tiny_config, "br_npa_high_res_no_refining", tiny_synth, tmp_path / "results",
                   "--attention_metrics", "Del")
    assert "./train.sh br_npa_high_res_no_refining" in str(exit_.value.code)  # the one line the user sees


def test_unknown_model_id_lists_ids(tiny_config, tiny_synth, tmp_path):
    for script in ("train.sh", "get_dauc_scores.sh", "get_iauc_scores.sh", "get_single_step_scores.sh"):
        completed = run(script, tiny_config, tiny_synth, tmp_path / "results", "resnet", check=False)
        assert completed.returncode != 0 and "br_npa_high_res_distill" in completed.stderr


def test_process_results_without_results(tmp_path):
    completed = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "processResults.py"), "--exp_id", "none",
                                "--results_dir", str(tmp_path)], capture_output=True, text=True)
    assert completed.returncode != 0 and "train a model first" in completed.stderr
    assert "Traceback" not in completed.stderr
