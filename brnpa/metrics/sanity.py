"""Sanity checks of a saliency source (docs/METHOD.md, "Sanity checks"): does its map depend on the trained
model (cascading model randomisation, Adebayo et al. 2018; Quantus's MPRT), and on the class it explains
(class sensitivity)?

Every function takes a source as `saliency(model, images, classes, indices) -> (B, h, w)` (brnpa/metrics/saliency.py)
computed from the model it is given: for a model's own maps, its live maps (live_own_maps), not the saved
ones, so that the original and the randomised maps are computed the same way.
"""
import copy

import numpy as np
import torch
import torch.nn as nn
from scipy import stats

from brnpa.metrics.perturbation import min_max
from brnpa.metrics.stages import SANITY_STAGES as STAGES
from brnpa.models.resnet import init_module


def check_stages(stages):
    """stages, or ValueError naming the stages when one is not a stage of the model."""
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown or not stages:
        raise ValueError(f"unknown sanity stage(s) {', '.join(unknown) or '(none given)'}: the stages are "
                         f"{', '.join(STAGES)}, from the top")
    return stages


def stage_modules(model, stage):
    """The modules of a stage of a models.net.Net. classifier: the classifier, the head and the auxiliary
    classifiers (everything above the backbone); layer1 to layer4: the backbone's stages; stem: its first
    convolution and BatchNorm."""
    check_stages([stage])
    if stage == "classifier":
        return [module for module in (model.classifier, model.head, model.aux) if module is not None]
    if stage == "stem":
        return [model.backbone.conv1, model.backbone.bn1]
    return [getattr(model.backbone, stage)]


def reinitialise(modules, in_backbone, seed):
    """Re-initialise the parameters of modules (and their children) as the model's constructor did, drawn
    from seed: the backbone's rule (models.resnet.init_module) inside the backbone, each module's
    reset_parameters() elsewhere. BatchNorm running statistics are kept (docs/METHOD.md says why)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for top in modules:
            for module in top.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    if module.affine:
                        nn.init.ones_(module.weight)
                        nn.init.zeros_(module.bias)
                elif in_backbone:
                    init_module(module)
                elif hasattr(module, "reset_parameters") and not list(module.children()):
                    module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)


def cascading_randomisation(model, stages, seed):
    """Yield (stage, model copy) with the stages re-initialised cumulatively, in the given order (the
    original model is left as it is). Stage k is drawn from seed + k."""
    randomised = copy.deepcopy(model)
    for k, stage in enumerate(check_stages(stages)):
        reinitialise(stage_modules(randomised, stage), stage != "classifier", seed + k)
        yield stage, randomised


def spearman(first, second):
    """Spearman's rank correlation of two maps (h, w): 1 for identical maps, 0 where one is constant and the
    other is not (a constant map ranks nothing)."""
    first, second = np.asarray(first, np.float64).ravel(), np.asarray(second, np.float64).ravel()
    if np.array_equal(first, second):
        return 1.0
    if first.min() == first.max() or second.min() == second.max():
        return 0.0
    return float(stats.spearmanr(first, second).statistic)


def ssim(first, second):
    """SSIM (scikit-image's structural_similarity) of two maps (h, w), each min-max scaled to [0, 1] first;
    the window is the largest odd size up to 7 that fits the map. nan for maps under 3 x 3, where no window
    fits (processResults.py shows '-' and counts no image)."""
    from skimage.metrics import structural_similarity
    first, second = (min_max(torch.as_tensor(np.asarray(m, np.float64))).numpy() for m in (first, second))
    window = min(7, min(first.shape) - (1 - min(first.shape) % 2))
    if window < 3:
        return float("nan")
    return float(structural_similarity(first, second, data_range=1.0, win_size=window))


def other_classes(classes, class_nb, seed, indices):
    """For each image, a class other than its own, drawn from (seed, test index)."""
    drawn = []
    for label, index in zip(classes, indices):
        choices = [c for c in range(class_nb) if c != label]
        drawn.append(int(np.random.default_rng([seed, int(index)]).choice(choices)))
    return drawn


def as_uint8(saliency):
    """A map (h, w) min-max scaled to 0-255, as uint8 (0 where it is constant)."""
    return (min_max(saliency.double()) * 255).round().to(torch.uint8)


def partner_indices(indices, evaluated, seed):
    """For each test index of `indices`, the test index of another image of the set (`evaluated`, the set's test
    indices), drawn from (seed, index): the pairs of the input-invariance statistic, which do not depend on
    the batches. An image of a set of one has no other: it is its own partner, and sanity_records gives it nan."""
    partners = []
    for index in indices:
        others = [other for other in evaluated if other != index] or [index]
        partners.append(int(np.random.default_rng([seed, int(index), 1]).choice(others)))
    return partners


def sanity_records(model, saliency, images, classes, indices, stages, seed, partners=None):
    """{'mprt_rho': per image (S,), 'mprt_ssim': per image (S,), 'class_rho': per image scalar,
    'randomised_maps': per image (S, h, w) uint8, 'noise_rho', 'noise_ssim', 'input_rho': per image scalars}:
    the Spearman correlation and SSIM between each image's original saliency and its saliency after each stage
    of the cascading randomisation (S stages), the correlation between its saliency for its class and for
    another class, the saliency after each stage (each min-max scaled to 0-255, for the report), the
    correlation and SSIM between the original saliency and a second pass of the unchanged model (1 for a model
    and source that draw nothing, the noise ceiling of the other statistics for one that does: BR-NPA's
    random-vector ablations), and the correlation between its saliency and that of another image of the set
    (input invariance: near 1 for a map that ignores the image). The second pass and the other image come last,
    so that the other statistics draw what they drew without them.
    images (B, 3, H, W); classes: the class explained per image; every map at the source's own resolution (h, w).
    partners: test indices -> (the test indices of the other images, their images (B, 3, H, W), their
    predicted classes); with None, input_rho is left out."""
    original = saliency(model, images, classes, indices).cpu()
    rho, similarity, randomised_maps = [], [], []
    for _, randomised in cascading_randomisation(model, stages, seed):
        maps = saliency(randomised, images, classes, indices).cpu()
        rho.append([spearman(a, b) for a, b in zip(original, maps)])
        similarity.append([ssim(a, b) for a, b in zip(original, maps)])
        randomised_maps.append([as_uint8(m) for m in maps])
    class_nb = model.classifier.out_features
    other = saliency(model, images, other_classes(classes, class_nb, seed, indices), indices).cpu()
    repeat = saliency(model, images, classes, indices).cpu()
    rho, similarity = torch.tensor(rho, dtype=torch.float64).T, torch.tensor(similarity, dtype=torch.float64).T
    records = {"mprt_rho": list(rho), "mprt_ssim": list(similarity),
               "class_rho": scalars(spearman, original, other),
               "randomised_maps": [torch.stack(per_image) for per_image in zip(*randomised_maps)],
               "noise_rho": scalars(spearman, original, repeat), "noise_ssim": scalars(ssim, original, repeat)}
    if partners is not None:
        partner_inds, partner_images, partner_classes = partners(indices)
        partner_maps = saliency(model, partner_images, partner_classes, partner_inds).cpu()
        no_other = torch.tensor(float("nan"), dtype=torch.float64)  # an image alone in its set
        records["input_rho"] = [rho if partner != index else no_other for rho, partner, index
                                in zip(scalars(spearman, original, partner_maps), partner_inds, indices)]
    return records


def scalars(statistic, first_maps, second_maps):
    """[statistic(a, b) as a float64 scalar tensor] over the pairs of maps."""
    return [torch.tensor(statistic(a, b), dtype=torch.float64) for a, b in zip(first_maps, second_maps)]
