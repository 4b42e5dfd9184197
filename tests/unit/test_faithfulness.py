"""DC, IC, AD, IIC and ADD (brnpa/metrics/faithfulness.py) against hand-worked examples and against the reference
package saliency-maps-metrics (skipped where it is not installed)."""
import math

import numpy as np
import pytest
import torch

from helpers import import_or_skip_unless_ci, tiny_model
from brnpa.metrics.faithfulness import keep_mask, pearson_rows, single_step_scores
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.perturbation import box_blur, min_max
from brnpa.metrics.scores import SCORES

# The hand-worked model: a 2x2 image, one cell per pixel; the class-0 score is a = 0.1 + 0.8 * sum_c w_c x_c
# (x_c: the cell's value averaged over the channels), given as logits (log a, log(1 - a)).
WEIGHTS = torch.tensor([[0.4, 0.1], [0.3, 0.2]])


def weighted_model(images):
    score = 0.1 + 0.8 * (images.mean(dim=1) * WEIGHTS).sum(dim=(1, 2))
    return torch.stack([score.log(), (1 - score).log()], dim=1)


def score_arrays(records):
    return {name: torch.stack(values).numpy().astype(np.float64) for name, values in records.items()}


def test_deletion_correlation_by_hand():
    """Cells deleted in the order (0,0), (0,1), (1,0), (1,1): the score goes 0.9 -> 0.58 -> 0.50 -> 0.26 -> 0.10,
    drops (0.32, 0.08, 0.24, 0.16) = 0.8 w; the saliency deleted per step is (1, 2/3, 1/3, 0). Centred: drops
    (0.12, -0.12, 0.04, -0.04), saliency (1/2, 1/6, -1/6, -1/2); r = 0.05333 / sqrt(0.032 * 0.5556) = 0.4."""
    saliency = torch.tensor([[1.0, 2 / 3], [1 / 3, 0.0]])
    records = CURVE_METRICS["Del"].records(weighted_model, [torch.ones(3, 2, 2)], [saliency], [0], 1, 3)
    arrays = score_arrays(records)
    assert arrays["start_scores"][0] == pytest.approx(0.9)
    assert arrays["curves"][0, :, 1] == pytest.approx([0.58, 0.50, 0.26, 0.10])
    assert arrays["step_saliency"][0] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert SCORES["DC"].per_image(arrays)[0] == pytest.approx(0.4)
    # the reversed saliency deletes (1,1), (1,0), (0,1), (0,0): drops 0.8 * (0.2, 0.3, 0.1, 0.4), saliency
    # (1, 2/3, 1/3, 0); centred drops (-0.04, 0.04, -0.12, 0.12): r = (-0.02 + 0.00667 + 0.02 - 0.06) / 0.13333
    reverse = CURVE_METRICS["Del"].records(weighted_model, [torch.ones(3, 2, 2)], [1 - saliency], [0], 1, 3)
    assert SCORES["DC"].per_image(score_arrays(reverse))[0] == pytest.approx(-0.4)


def test_insertion_correlation_by_hand():
    """Insertion starts from the blurred image (every pixel b = 4 / 121^2 after the zero-padded box blur) and
    inserts cell c at step t: the score rises by 0.8 w_c (1 - b), proportional to w, so IC is the 0.4 of DC."""
    saliency = torch.tensor([[1.0, 2 / 3], [1 / 3, 0.0]])
    image = torch.ones(3, 2, 2)
    blurred = 4 / 121 ** 2
    records = CURVE_METRICS["Add"].records(weighted_model, [image], [saliency], [0], 1, 3)
    arrays = score_arrays(records)
    assert arrays["start_scores"][0] == pytest.approx(0.1 + 0.8 * blurred)
    rises = np.diff(np.concatenate([arrays["start_scores"], arrays["curves"][0, :, 1]]))
    assert rises == pytest.approx(0.8 * (1 - blurred) * np.array([0.4, 0.1, 0.3, 0.2]))
    assert SCORES["IC"].per_image(arrays)[0] == pytest.approx(0.4)


def test_a_constant_sequence_has_a_correlation_of_zero():
    assert pearson_rows([[1, 2, 3], [1, 1, 1], [0, 0, 0]], [[2, 4, 6.5], [1, 2, 3], [0, 0, 0]]).tolist() == \
        pytest.approx([pearson_by_hand([1, 2, 3], [2, 4, 6.5]), 0, 0])


def pearson_by_hand(first, second):
    n = len(first)
    mean_first, mean_second = sum(first) / n, sum(second) / n
    cov = sum((a - mean_first) * (b - mean_second) for a, b in zip(first, second))
    return cov / math.sqrt(sum((a - mean_first) ** 2 for a in first) * sum((b - mean_second) ** 2 for b in second))


def test_single_step_scores_by_hand():
    """Saliency (1, 0.5; 0, 0.25) on the ones image: kept cells x = m, sum w m = 0.4 + 0.05 + 0 + 0.05 = 0.5, so the
    kept score is 0.5; removed x = 1 - m, sum w (1 - m) = 0.5, removed score 0.5; clean 0.9. AD = 0.4 / 0.9,
    IIC = 0, ADD = 0.4 / 0.9. A second pair of scores (clean 0.5, kept 0.6, removed 0.7): AD 0, IIC 1,
    ADD -0.4."""
    saliency = torch.tensor([[1.0, 0.5], [0.0, 0.25]])
    scores = single_step_scores(weighted_model, [torch.ones(3, 2, 2)], [saliency], [0], 2)
    assert scores[0].tolist() == pytest.approx([0.9, 0.5, 0.5])
    arrays = {"scores": np.array([scores[0].numpy(), [0.5, 0.6, 0.7]], dtype=np.float64)}
    assert SCORES["AD"].per_image(arrays) == pytest.approx([0.4 / 0.9, 0.0])
    assert SCORES["IIC"].per_image(arrays).tolist() == [0.0, 1.0]
    assert SCORES["ADD"].per_image(arrays) == pytest.approx([0.4 / 0.9, -0.4])


def test_keep_mask_is_min_max_then_bilinear():
    """A 2x2 map (0, 2; 0, 2) -> min-max (0, 1; 0, 1) -> 4 px wide: the pixel centres fall at -0.25, 0.25, 0.75
    and 1.25 cells, clamped at the border: (0, 0.25, 0.75, 1) in every row."""
    mask = keep_mask(torch.tensor([[0.0, 2.0], [0.0, 2.0]]), (4, 4))
    assert mask.tolist() == [[0, 0.25, 0.75, 1]] * 4


def reference_setup(image_nb, map_side):
    """A tiny ResNet, images, its predicted classes and saliency maps without ties."""
    torch.manual_seed(3)
    model = tiny_model(head="cnn").eval()
    images = torch.rand(image_nb, 3, 32, 32)
    with torch.no_grad():
        classes = model(images)["output"].argmax(dim=1)
    saliencies = torch.rand(image_nb, map_side, map_side)
    return model, images, classes, saliencies


class SoftmaxScores(torch.nn.Module):
    """The model as the reference package wants it: images -> softmax scores."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return torch.softmax(self.model(images)["output"], dim=1)


@pytest.mark.parametrize("key", ["Del", "Add"])
def test_correlations_equal_the_reference_package(key):
    """saliency-maps-metrics' Deletion / Insertion (black deletion; insertion from the image our blur gives,
    passed in as its masking data) give the same curves and the same DC / IC per image."""
    multi_step = import_or_skip_unless_ci("saliency_maps_metrics.multi_step_metrics")
    model, images, classes, saliencies = reference_setup(3, 4)

    def forward(batch):
        return model(batch)["output"]
    with torch.no_grad():
        records = CURVE_METRICS[key].records(forward, list(images), [min_max(s) for s in saliencies],
                                             classes.tolist(), 1, 7)
    ours = SCORES["DC" if key == "Del" else "IC"].per_image(score_arrays(records))
    metric = multi_step.Deletion() if key == "Del" else multi_step.Insertion()
    for index in range(len(images)):
        image = images[index:index + 1]
        masking = torch.zeros_like(image) if key == "Del" else box_blur(image)
        scores, saliency_means = metric.compute_scores(SoftmaxScores(model), image, saliencies[index][None, None],
                                                       classes[index:index + 1], masking_data=masking)
        assert scores[0, 1:] == pytest.approx(records["curves"][index][:, 1].numpy(), abs=1e-5)
        assert scores[0, 0] == pytest.approx(float(records["start_scores"][index]), abs=1e-5)
        reference = metric.compute_calibration_metric(scores, saliency_means)[0]
        assert ours[index] == pytest.approx(reference, abs=1e-5)


def test_single_step_scores_equal_the_reference_package():
    """saliency-maps-metrics' IIC_AD and ADD, one image per call (it min-max scales over the whole batch) and maps
    at the image size (its bicubic and our bilinear upsampling then both keep the map as it is)."""
    single_step = import_or_skip_unless_ci("saliency_maps_metrics.single_step_metrics")
    model, images, classes, saliencies = reference_setup(4, 32)

    def forward(batch):
        return model(batch)["output"]
    with torch.no_grad():
        scores = single_step_scores(forward, list(images), list(saliencies), classes.tolist(), 5)
    arrays = {"scores": torch.stack(scores).numpy().astype(np.float64)}
    for index in range(len(images)):
        arguments = (SoftmaxScores(model), images[index:index + 1], saliencies[index][None, None],
                     classes[index:index + 1])
        iic_ad, add = single_step.IIC_AD()(*arguments), single_step.ADD()(*arguments)
        assert SCORES["AD"].per_image(arrays)[index] == pytest.approx(float(iic_ad["ad"]), abs=1e-5)
        assert SCORES["IIC"].per_image(arrays)[index] == float(iic_ad["iic"])
        assert SCORES["ADD"].per_image(arrays)[index] == pytest.approx(float(add["add"]), abs=1e-5)


def test_an_unknown_source_or_task_lists_the_valid_ones(capsys):
    """--att_metrics_post_hoc with an unknown source (as ./get_single_step_scores.sh passes it on) names every
    source; --attention_metrics with an unknown key names every task. One line each."""
    from brnpa.runs.args import parse_args
    from brnpa.metrics.saliency import POST_HOC_NAMES
    from brnpa.metrics.tasks import TASKS
    for option, valid in (("--att_metrics_post_hoc", POST_HOC_NAMES), ("--attention_metrics", TASKS)):
        with pytest.raises(SystemExit):
            parse_args(["--attention_metrics", "Single", option, "nothing"])
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and all(f"'{name}'" in err for name in valid)


def test_progress_and_sets_of_an_older_version_are_computed_again(tmp_path, capsys):
    """Saved progress without the arrays DC / IC need (an older version saved curves only) is not resumed, and
    a finished set without them is not taken as done; each says so in one line."""
    from brnpa.runs import results_io
    from brnpa.jobs.attention_metrics import read_partial, saved_signature
    from brnpa.metrics.tasks import TASKS
    partial = tmp_path / "partial.pth"
    torch.save({"signature": {"run_id": "abc"}, "curves": [torch.zeros(4, 2)]}, partial)
    assert read_partial(str(partial), TASKS["Del"].arrays, explain=True) == (None, {name: [] for name in
                                                                                    TASKS["Del"].arrays})
    assert "older version" in capsys.readouterr().err
    paths = results_io.att_metrics_paths(str(tmp_path), "cnn", "Del")
    for name in ("curves", "img_inds", "preds", "targets"):
        np.save(paths[name], np.zeros(2))
    with open(paths["meta"], "w") as file:
        file.write('{"signature": {"run_id": "abc"}}')
    assert saved_signature(paths) is None
    err = capsys.readouterr().err
    assert "start_scores, step_saliency" in err and "computing the set again" in err


@pytest.mark.parametrize("key", ["Del", "Add"])
def test_the_reference_package_default_step_cap(key):
    """saliency-maps-metrics caps a curve at 196 steps by default (bound_max_step=True, max_step_nb=196): on a
    28x28 map it moves 784 // 196 = 4 cells per step. The project's equivalent, the step count of
    --att_metrics_few_steps at 448 px (196, the low-res map's cell count), gives the same 4 cells per step,
    and the same curves and DC / IC as the package's defaults."""
    from brnpa.jobs.attention_metrics import few_step_nb
    from helpers import tiny_options
    from brnpa.metrics.perturbation import cells_per_step
    multi_step = import_or_skip_unless_ci("saliency_maps_metrics.multi_step_metrics")
    assert few_step_nb(tiny_options(img_size=448, resnet_stride=2)) == 196
    step_cells = cells_per_step(28, 28, 196)
    assert step_cells == 4
    torch.manual_seed(3)
    model = tiny_model(head="cnn").eval()
    images, saliencies = torch.rand(2, 3, 56, 56), torch.rand(2, 28, 28)
    with torch.no_grad():
        classes = model(images)["output"].argmax(dim=1)
        records = CURVE_METRICS[key].records(lambda batch: model(batch)["output"], list(images),
                                             [min_max(s) for s in saliencies], classes.tolist(), step_cells, 64)
    ours = SCORES["DC" if key == "Del" else "IC"].per_image(score_arrays(records))
    metric = multi_step.Deletion() if key == "Del" else multi_step.Insertion()  # the package's defaults
    for index in range(2):
        image = images[index:index + 1]
        masking = torch.zeros_like(image) if key == "Del" else box_blur(image)
        scores, saliency_means = metric.compute_scores(SoftmaxScores(model), image, saliencies[index][None, None],
                                                       classes[index:index + 1], masking_data=masking)
        assert scores.shape == (1, 197)  # the start image and 196 steps
        assert scores[0, 1:] == pytest.approx(records["curves"][index][:, 1].numpy(), abs=1e-5)
        assert ours[index] == pytest.approx(metric.compute_calibration_metric(scores, saliency_means)[0], abs=1e-5)


class WeightedScores(torch.nn.Module):
    """The hand-worked model as the reference package wants it: images -> softmax scores."""

    def forward(self, images):
        return torch.softmax(weighted_model(images), dim=1)


def test_a_constant_map_keeps_nothing_here_and_its_level_in_the_package():
    """A constant map of 0.7 on the ones image (clean score 0.9). Here it is scaled to 0: the kept image is
    black (score 0.1, AD = 0.8 / 0.9) and the removed one is the clean image (ADD 0). saliency-maps-metrics
    leaves it at 0.7: kept 0.7 (score 0.1 + 0.8 * 0.7 = 0.66, AD = 0.24 / 0.9), removed 0.3 (score 0.34,
    ADD = 0.56 / 0.9)."""
    constant = torch.full((2, 2), 0.7)
    scores = single_step_scores(weighted_model, [torch.ones(3, 2, 2)], [constant], [0], 2)
    arrays = {"scores": torch.stack(scores).numpy().astype(np.float64)}
    assert scores[0].tolist() == pytest.approx([0.9, 0.1, 0.9])
    assert SCORES["AD"].per_image(arrays)[0] == pytest.approx(0.8 / 0.9)
    assert SCORES["ADD"].per_image(arrays)[0] == pytest.approx(0.0)
    single_step = import_or_skip_unless_ci("saliency_maps_metrics.single_step_metrics")
    arguments = (WeightedScores(), torch.ones(1, 3, 2, 2), constant[None, None], torch.tensor([0]))
    assert float(single_step.IIC_AD()(*arguments)["ad"]) == pytest.approx(0.24 / 0.9, abs=1e-6)
    assert float(single_step.ADD()(*arguments)["add"]) == pytest.approx(0.56 / 0.9, abs=1e-6)
