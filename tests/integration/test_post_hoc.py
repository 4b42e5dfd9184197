"""Post-hoc saliency sources through the same DAUC / IAUC pipeline as a model's own maps."""
import csv
import os
import re

import numpy as np
import pytest
import torch

from brnpa.runs import lifecycle
import trainVal
from helpers import TINY_CONFIG, logits_module, post_hoc_maps_of_set, transformed_test_images
from brnpa.metrics.saliency import POST_HOC_NAMES


@pytest.fixture(scope="module")
def trained_cnn(tiny_synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("posthoc")
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG)
    argv = ["-c", str(config), "--data_dir", tiny_synth, "--results_dir", str(root / "results"), "--model_id",
            "cnn", "--head", "cnn", "--stride_lay3", "2", "--stride_lay4", "2"]
    trainVal.main(argv)
    return argv, root


@pytest.mark.parametrize("method", POST_HOC_NAMES)
def test_every_method_gives_curves(trained_cnn, method):
    argv, root = trained_cnn
    folder = root / "results" / "e2e"
    extra = []
    if method == "maps":  # precomputed maps: one random 3 x 5 map per test image, in a file
        test_nb = len(np.load(next(folder.glob("attMapscnn_epoch*_test.npy"))))
        np.save(root / "random_maps.npy", np.random.default_rng(0).random((test_nb, 3, 5)))
        extra = ["--maps", str(root / "random_maps.npy")]
    trainVal.main(argv + ["--attention_metrics", "Del", "--att_metrics_post_hoc", method, "--rise_masks", "200",
                          *extra])
    assert np.load(folder / f"attMetrDel_cnn-{method}.npy").shape == (4, 4, 2)
    maps = post_hoc_maps_of_set(folder, f"cnn-{method}")
    assert maps.dtype == np.float32 and maps.shape == (4, 2, 2) and np.isfinite(maps).all()
    if method in LIBRARY_CLASSES:  # the saved maps are the library's class, called here directly
        image_inds = np.load(folder / f"attMetrDel_cnn-{method}_imgInds.npy")
        preds = np.load(folder / f"attMetrDel_cnn-{method}_preds.npy")
        assert np.allclose(maps, library_maps(folder, method, image_inds, preds), atol=1e-5)


def library_maps(folder, method, image_inds, preds):
    """pytorch-grad-cam's class for the method, on the last stage, kept at the feature-map size."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam_class = getattr(pytorch_grad_cam, LIBRARY_CLASSES[method])

    class AtFeatureSize(cam_class):
        def get_target_width_height(self, input_tensor):
            return tuple(reversed(self.activations_and_grads.activations[0].shape[-2:]))

    landed = lifecycle.LandedRun(str(folder), "cnn")
    model, _ = landed.load_model()
    images, _ = transformed_test_images(landed.args)
    with AtFeatureSize(model=logits_module(model), target_layers=[model.backbone.layer4]) as cam:
        cam.batch_size = landed.args.att_metrics_batch_size
        return cam(input_tensor=images[image_inds], targets=[ClassifierOutputTarget(int(c)) for c in preds])


# our method names -> pytorch-grad-cam's class names, written out here independently of brnpa/metrics/saliency.py
LIBRARY_CLASSES = {"gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                   "scorecam": "ScoreCAM", "ablationcam": "AblationCAM", "eigencam": "EigenCAM"}


def auc(curves, metric):
    left, scores = curves[:, :, 0], curves[:, :, 1]
    low, high = left.min(axis=1, keepdims=True), left.max(axis=1, keepdims=True)
    x = 1 - left / high if metric == "Add" else 1 - (left - low) / (high - low)
    return ((x[:, 1:] - x[:, :-1]) * (scores[:, 1:] + scores[:, :-1]) / 2).sum(axis=1)


def test_post_hoc_rows_in_process_results(trained_cnn, capsys):
    import processResults
    argv, root = trained_cnn
    for metric in ("Del", "Add"):
        trainVal.main(argv + ["--attention_metrics", metric, "--att_metrics_post_hoc", "gradcampp"])
    capsys.readouterr()
    processResults.main(["--exp_id", "e2e", "--results_dir", str(root / "results"), "--vis_dir",
                         str(root / "vis")])
    out = capsys.readouterr().out
    assert "cnn-gradcampp" in out
    folder = root / "results" / "e2e"
    for metric in ("Del", "Add"):
        with open(folder / f"attMetrics_{metric}.csv") as file:
            means = {row["model_id"]: float(row["mean"]) for row in csv.DictReader(file)}
        expected = auc(np.load(folder / f"attMetr{metric}_cnn-gradcampp.npy"), metric).mean()
        assert means["cnn-gradcampp"] == pytest.approx(expected, abs=1e-9)
    def cells(start):  # the printed row that starts with start, cut at the runs of spaces between columns
        return re.split(r"\s{2,}", next(line for line in out.splitlines() if line.startswith(start)).strip())
    header, row = cells("model_id"), cells("cnn-gradcampp")
    assert row[header.index("n")] == "4"  # the 4 evaluated images
    assert row[1] == cells("cnn ")[1]  # the model's accuracy


def test_unknown_method_is_a_clear_error(trained_cnn, capsys):
    argv, root = trained_cnn
    before = sorted(os.listdir(root / "results" / "e2e"))
    with pytest.raises(SystemExit):
        trainVal.main(argv + ["--attention_metrics", "Del", "--att_metrics_post_hoc", "gradcam_pp"])
    err = capsys.readouterr().err
    assert "got gradcam_pp" in err and all(f"'{method}'" in err for method in POST_HOC_NAMES)
    assert err.count("\n") == 1 and sorted(os.listdir(root / "results" / "e2e")) == before


# float32 gradients computed with another summation order (another thread count) differ by reassociation: a
# pixel's gradient sums at most about a thousand products in the tiny CNN (8 to 64 channels, 3 x 3 kernels), so
# by about 1e3 x 2^-24 = 6e-5 of the largest values; two values closer than this bound, rounded up, may swap.
NEAR_TIE = 1e-4


def rank_swap_tolerance(first, second):
    """How far rounding can move Spearman's rho of two maps (n values each): each pair of values closer than
    NEAR_TIE x the map's largest magnitude may swap ranks, and one swap of adjacent ranks changes the sum of rank
    products by at most n - 1, so rho (12 / (n (n^2 - 1)) times that sum, less a constant) by at most
    12 / (n (n + 1))."""
    n = len(first)
    swaps = 0
    for values in (first, second):
        ordered = np.sort(values)
        close = np.diff(ordered) <= NEAR_TIE * np.abs(values).max()
        both_zero = (ordered[:-1] == 0) & (ordered[1:] == 0)  # a dead ReLU path's 0 stays exactly 0
        swaps += int((close & ~both_zero).sum())
    return swaps * 12 / (n * (n + 1)) + 1e-12


def test_sanity_of_a_gradient_source_at_its_own_resolution(trained_cnn, capsys):
    """The sanity task on the plain gradient: its statistics come from the 32 x 32 pixel maps (the randomised maps
    are saved at that size; the curves' maps are 2 x 2), and input ρ, the rank correlation of an image's map
    with another image's, is recomputed here from the gradient computed directly (torch.autograd, scipy's
    Spearman) for the pairs drawn as documented: for test index i, np.random.default_rng([seed, i, 1]) chooses
    among the set's other images. processResults.py shows the column."""
    import processResults
    from scipy import stats
    argv, root = trained_cnn
    trainVal.main(argv + ["--attention_metrics", "Sanity", "--att_metrics_post_hoc", "gradient",
                          "--sanity_stages", "classifier,stem"])
    folder = root / "results" / "e2e"
    assert np.load(folder / "attMetrSanity_cnn-gradient_randomisedMaps.npy").shape == (4, 2, 32, 32)
    inds = np.load(folder / "attMetrSanity_cnn-gradient_imgInds.npy").tolist()
    preds = np.load(folder / "attMetrSanity_cnn-gradient_preds.npy").tolist()
    landed = lifecycle.LandedRun(str(folder), "cnn")
    model = landed.load_model()[0].eval()
    images, _ = transformed_test_images(landed.args)
    with torch.no_grad():
        all_preds = model(images)["output"].argmax(dim=1).tolist()
    assert [all_preds[i] for i in inds] == preds

    def gradient_map(index):
        image = images[index:index + 1].clone().requires_grad_(True)
        logit = model(image)["output"][0, all_preds[index]]
        return torch.autograd.grad(logit, image)[0].abs().sum(dim=1)[0].numpy()
    expected, tolerances = [], []
    for index in inds:
        partner = int(np.random.default_rng([landed.args.seed, index, 1]).choice([i for i in inds if i != index]))
        first, second = gradient_map(index).ravel(), gradient_map(partner).ravel()
        expected.append(stats.spearmanr(first, second).statistic)
        tolerances.append(rank_swap_tolerance(first, second))
    saved = np.load(folder / "attMetrSanity_cnn-gradient_inputRho.npy")
    assert np.all(np.abs(saved - np.array(expected)) <= np.array(tolerances)), (saved, expected, tolerances)
    capsys.readouterr()
    processResults.main(["--exp_id", "e2e", "--results_dir", str(root / "results"), "--vis_dir",
                         str(root / "vis")])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "input ρ" in lines[lines.index("-- sanity") + 1]
    assert "input ρ: the rank correlation between the maps" in out
