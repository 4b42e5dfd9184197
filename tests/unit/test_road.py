"""ROAD (brnpa/metrics/curves.py 'ROADMoRF', 'ROADLeRF') against pytorch-grad-cam's implementation
(pytorch_grad_cam.metrics.road), on the same tiny model, images and maps. The two differ where these tests
say: grad-cam draws its noise from torch's global generator (here seeded per image, so the noise is set to 0
on both sides to compare), returns the score minus the clean image's score (here the score itself), and
thresholds a pixel map at its percentiles (here whole cells of the model's map are removed; on a map whose
pixels are cell blocks, the two remove the same pixels)."""
import dataclasses

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric, RemoveLeastRelevantFirst,
                                                              RemoveMostRelevantFirst)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from helpers import logits_module, tiny_model
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.perturbation import linear_imputation

# grad-cam passes a tensor to numpy (np.float32(mask < threshold)), which numpy 2 warns about: its code, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

# Both solve the imputation in float64 and return float32 images: they agree to float32 rounding of values of
# order 1 (a few ulps, 2^-23 each), far below the tolerance.
IMAGE_TOLERANCE = 1e-5
# The scores come from one float32 forward pass of images that differ by that much.
SCORE_TOLERANCE = 1e-5


@pytest.mark.parametrize("share", [0.05, 0.5, 0.95])
def test_the_imputation_equals_grad_cams(share):
    """Random pixels removed (not cells: the imputer alone), noise 0 on both sides."""
    torch.manual_seed(0)
    image = torch.randn(3, 12, 10)
    removed = torch.rand(12, 10) < share
    theirs = NoisyLinearImputer(noise=0.0)(image, (~removed).float())  # grad-cam's mask: 1 where a pixel is kept
    ours = linear_imputation(image, removed)
    assert torch.equal(ours[:, ~removed], image[:, ~removed])
    assert torch.allclose(ours, theirs, atol=IMAGE_TOLERANCE, rtol=0)


def test_the_noise_is_the_stated_gaussian_on_the_removed_pixels():
    """With noise, the removed pixels move from the noise-free imputation by draws of the stated standard
    deviation (4000 draws: the sample deviation is within 5% of it, 4 standard errors), the others not at all."""
    torch.manual_seed(0)
    image, removed = torch.randn(3, 40, 40), torch.rand(40, 40) < 0.85
    noisy = linear_imputation(image, removed, 0.01, np.random.default_rng(0))
    moved = (noisy - linear_imputation(image, removed))[:, removed]
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])
    assert moved.numel() > 4000 and abs(moved.double().std().item() / 0.01 - 1) < 0.05


@pytest.mark.parametrize("key,grad_cam_rule", [("ROADMoRF", RemoveMostRelevantFirst),
                                               ("ROADLeRF", RemoveLeastRelevantFirst)])
def test_road_curves_equal_grad_cams(key, grad_cam_rule):
    """On a tiny CNN with 4x4 maps at 32 px: for each grad-cam percentile p (10, ..., 90), grad-cam's
    perturbation removes 100 - p % of the pixels of the map upsampled to pixel blocks, which are the cells our
    step k = (100 - p) / 10 removes (ceil(k x 16 / 10) cells), and its score difference plus the clean score
    is our curve's point at that step; the means over the nine (ROAD's summary) agree too."""
    metric = dataclasses.replace(CURVE_METRICS[key], noise=0.0)
    torch.manual_seed(0)
    net = tiny_model(head="cnn", resnet_stride=1).eval()
    model = logits_module(net)
    images = torch.randn(3, 3, 32, 32)
    saliencies = [torch.randperm(16).float().view(4, 4) / 15 for _ in range(3)]  # distinct cell values
    with torch.no_grad():
        logits = model(images)
        classes = logits.argmax(dim=1).tolist()
        clean = torch.softmax(logits, dim=1)[range(3), classes].numpy()
        ours = metric.records(model, list(images), saliencies, classes, 1, 4)["curves"]
    cams = np.stack([saliency.repeat_interleave(8, 0).repeat_interleave(8, 1).numpy() for saliency in saliencies])
    targets = [ClassifierOutputSoftmaxTarget(cls) for cls in classes]
    theirs = []
    for percentile in range(10, 100, 10):
        perturbation = grad_cam_rule(percentile, NoisyLinearImputer(noise=0.0))
        differences, perturbed = PerturbationConfidenceMetric(perturbation)(images, cams, targets, model,
                                                                            return_visualization=True)
        step = (100 - percentile) // 10 - 1
        removed_cells = int(np.ceil((step + 1) * 16 / 10))
        for image, copy, curve in zip(images, perturbed, ours):
            changed_pixels = int((copy != image).any(dim=0).sum())  # imputed pixels rarely equal the originals
            assert changed_pixels == removed_cells * 64 and curve[step, 0] == 16 - removed_cells
        theirs.append(differences + clean)
        assert np.allclose([curve[step, 1].item() for curve in ours], differences + clean, atol=SCORE_TOLERANCE)
    summaries = [metric.summarise(curve.numpy()) for curve in ours]
    assert np.allclose(summaries, np.mean(theirs, axis=0), atol=SCORE_TOLERANCE)
