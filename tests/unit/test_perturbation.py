import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from brnpa.metrics.auc import curve_auc, deletion_x, insertion_x
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.localisation import energy_in_mask, pointing_game
from brnpa.metrics.perturbation import box_blur, cells_per_step, saliency_map
from helpers import slow_curve
from brnpa.models.heads import HEADS


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                         nn.Linear(36, 5)).eval()


@pytest.mark.parametrize("metric", ["Del", "Add"])
@pytest.mark.parametrize("map_size,step_cells", [(2, 1), (4, 1), (4, 2), (8, 4)])
def test_batched_equals_one_forward_per_step(metric, map_size, step_cells):
    model = tiny_model()
    torch.manual_seed(1)
    images = torch.randn(5, 3, 16, 16)
    saliencies = [torch.rand(map_size, map_size) for _ in range(5)]
    saliencies[0][0, 0] = saliencies[0][1, 1]  # a tie: the lower cell index goes first
    with torch.no_grad():
        classes = model(images).argmax(dim=1).tolist()
        curves = CURVE_METRICS[metric].records(model, list(images), saliencies, classes, step_cells,
                                               batch_size=7)["curves"]
    for image, saliency, curve in zip(images, saliencies, curves):
        expected = slow_curve(model, image, saliency, metric, step_cells)
        assert curve.shape == expected.shape
        assert torch.allclose(curve.double(), expected, atol=1e-5)


def test_blur_is_zero_padded_box():
    image = torch.ones(1, 3, 4, 4)
    assert torch.allclose(box_blur(image), torch.full((1, 3, 4, 4), 16 / 121 ** 2))


@pytest.mark.parametrize("kernel", [5, 121])
def test_blur_equals_the_window_mean_pixel_by_pixel(kernel):
    """Against the definition, in float64: the sum of the image over the kernel x kernel window centred on each
    pixel (the part inside the image), divided by kernel ** 2. A 9 x 13 image: a 5-px window is cut by the
    borders on some pixels only, a 121-px one covers the whole image from every pixel."""
    torch.manual_seed(0)
    image = torch.randn(2, 3, 9, 13)
    values, half = image.double().numpy(), kernel // 2
    expected = np.zeros_like(values)
    for row in range(9):
        for col in range(13):
            window = values[:, :, max(row - half, 0):row + half + 1, max(col - half, 0):col + half + 1]
            expected[:, :, row, col] = window.sum(axis=(2, 3)) / kernel ** 2
    assert np.allclose(box_blur(image, kernel).numpy(), expected, rtol=0, atol=1e-6)


class RegionModel(nn.Module):
    """logit 0 = mean of channel 0 over the left half (cells TL and BL of a 2x2 map), logit 1 = 0."""

    def forward(self, images):
        left = images[:, 0, :, :2].mean(dim=(1, 2))
        return torch.stack([left, torch.zeros_like(left)], dim=1)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_hand_made_region_model():
    image = torch.ones(3, 4, 4)
    saliency = torch.tensor([[0.9, 0.1], [0.5, 0.2]])  # order: TL, BL, BR, TR
    deletion = CURVE_METRICS["Del"].records(RegionModel(), [image], [saliency], [0], 1, 3)["curves"][0]
    # TL deleted: left half mean 0.5; then BL: 0
    assert torch.allclose(deletion, torch.tensor([[3, sigmoid(0.5)], [2, 0.5], [1, 0.5], [0, 0.5]]), atol=1e-6)
    insertion = CURVE_METRICS["Add"].records(RegionModel(), [image], [saliency], [0], 1, 3)["curves"][0]
    blurred = 16 / 121 ** 2  # every pixel of a 4x4 image of ones under the 121x121 box
    expected = [[3, sigmoid((1 + blurred) / 2)], [2, sigmoid(1.0)], [1, sigmoid(1.0)], [0, sigmoid(1.0)]]
    assert torch.allclose(insertion, torch.tensor(expected), atol=1e-6)


def test_saliency_choice_per_model():
    maps = torch.tensor([[[0., 2.], [4., 8.]], [[8., 4.], [2., 0.]]])
    norm = torch.tensor([[[1., 1.], [1., 2.]]])
    for head in ("br_npa", "cnn"):  # map 0 times the norm
        assert torch.allclose(saliency_map(maps, norm, HEADS[head]), torch.tensor([[0, .125], [.25, 1.]]))
    # b_cnn: mean map (4, 3, 3, 4) * norm -> (4, 3, 3, 8) -> minmax
    assert torch.allclose(saliency_map(maps, norm, HEADS["b_cnn"]), torch.tensor([[.2, 0.], [0., 1.]]))


def test_cells_per_step():
    assert cells_per_step(14, 14) == 1 and cells_per_step(14, 14, 196) == 1
    assert cells_per_step(56, 56, 196) == 16 and cells_per_step(16, 16, 16) == 16
    with pytest.raises(ValueError, match="multiple of 196"):
        cells_per_step(8, 8, 196)


def test_auc_conventions():
    curve = np.array([[3, 1.], [2, .5], [1, .5], [0, 0.]])
    assert curve_auc(curve, deletion_x) == pytest.approx(0.5)
    assert curve_auc(curve, insertion_x) == pytest.approx(0.5)
    left = np.array([4, 3, 2])
    assert np.allclose(deletion_x(left), [0, .5, 1])
    assert np.allclose(insertion_x(left), [0, .25, .5])
    scores = np.array([[4, 1.], [3, 1.], [2, 1.]])
    assert CURVE_METRICS["Del"].summarise(scores) == pytest.approx(1.0)
    assert CURVE_METRICS["Add"].summarise(scores) == pytest.approx(0.5)


def test_localisation_scores():
    saliency = np.array([[0., 1.], [3., 0.]])
    mask = np.zeros((4, 4), bool)
    mask[2:, :2] = True  # bottom-left cell
    assert energy_in_mask(saliency, mask) == pytest.approx(0.75)
    assert pointing_game(saliency, mask) == 1.0
    assert pointing_game(np.array([[0., 5.], [3., 0.]]), mask) == 0.0
