"""The gradient family of saliency sources (brnpa/metrics/gradient_methods.py) against captum called directly, and the
properties the methods are known by: DeepLIFT's and Integrated Gradients' attributions add up to the logit's
change from the baseline, SmoothGrad's noise does not depend on the batch."""
import pytest
import torch

from helpers import logits_module, tiny_model
from brnpa.metrics import gradient_methods
from brnpa.metrics.saliency import SOURCES, SourceInputs, image_seed
from brnpa.metrics.saliency_methods import LogitsOnly

captum_attr = pytest.importorskip("captum.attr")

VALUES = {"seed": 5, "batch_size": 8, "ig_steps": 6, "smoothgrad_samples": 3, "smoothgrad_noise": 0.5,
          "occlusion_cells": 1.0, "occlusion_stride_cells": 0.5}


def direct(name, model, images, targets, indices):
    """captum's class for the source, called here with the values above, (B, 3, H, W)."""
    module = logits_module(model)
    if name == "gradient":
        return captum_attr.Saliency(module).attribute(images, target=targets, abs=True)
    if name == "integratedgradients":
        return captum_attr.IntegratedGradients(module).attribute(images, target=targets, n_steps=6)
    if name == "guidedbackprop":
        return captum_attr.GuidedBackprop(module).attribute(images, target=targets)
    if name == "inputxgradient":
        return captum_attr.InputXGradient(module).attribute(images, target=targets)
    if name == "deeplift":
        return captum_attr.DeepLift(module).attribute(images, target=targets, baselines=torch.zeros_like(images))
    if name == "occlusion":  # 32 px, a 2 x 2 map: a cell is 16 px, the stride half a cell
        return captum_attr.Occlusion(module).attribute(images, sliding_window_shapes=(3, 16, 16),
                                                       strides=(3, 8, 8), target=targets, baselines=0)
    if name == "smoothgrad":  # one image at a time, its noise from its own seed; the signed gradient averaged
        attributions = []
        for image, target, index in zip(images, targets, indices):
            torch.manual_seed(image_seed(5, index))
            attributions.append(captum_attr.NoiseTunnel(captum_attr.Saliency(module)).attribute(
                image[None], nt_type="smoothgrad", nt_samples=3, stdevs=0.5, target=int(target), abs=False))
        return torch.cat(attributions)
    raise AssertionError(f"add {name} to direct()")


@pytest.mark.parametrize("name", gradient_methods.METHODS)
@pytest.mark.parametrize("head", ["cnn", "b_cnn", "br_npa"])
def test_each_source_is_captum_called_directly(name, head):
    """The source's map (as the tasks call it: under no_grad, through its entry) equals the sum over the colour
    channels of |captum's attribution|."""
    torch.manual_seed(0)
    model = tiny_model(head=head, class_nb=3, resnet_stride=1).eval()  # 2 x 2 maps at 32 px
    assert model(torch.zeros(1, 3, 32, 32))["att_maps"].shape[-2:] == (2, 2)
    images, classes, indices = torch.randn(3, 3, 32, 32), [0, 2, 1], [4, 9, 11]
    saliency = SOURCES[name].function(SourceInputs(dict(VALUES)))
    with torch.no_grad():
        maps = saliency(model, images, classes, indices)
    expected = direct(name, model, images, torch.tensor(classes), indices).detach().abs().sum(dim=1)
    assert maps.shape == (3, 32, 32)
    assert torch.allclose(maps, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


def test_smoothgrad_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = tiny_model(head="cnn", class_nb=3).eval()
    images = torch.randn(3, 3, 32, 32)
    saliency = SOURCES["smoothgrad"].function(SourceInputs(dict(VALUES)))
    together = saliency(model, images, [0, 1, 2], [4, 9, 11])
    alone = saliency(model, images[1:2], [1], [9])
    assert torch.allclose(together[1], alone[0], rtol=1e-5, atol=1e-7) and not torch.equal(together[0], together[1])
    other_seed = SOURCES["smoothgrad"].function(SourceInputs({**VALUES, "seed": 6}))
    assert not torch.allclose(other_seed(model, images[1:2], [1], [9]), alone)


@pytest.mark.parametrize("name", ["deeplift", "integratedgradients"])
def test_attributions_add_up_to_the_change_of_the_logit(name):
    """Completeness: the signed attributions of an image sum to logit(image) - logit(zero baseline), exactly
    for DeepLIFT's rescale rule on a ReLU network (each ReLU module used once), up to the quadrature's error for
    Integrated Gradients (200 steps here)."""
    torch.manual_seed(0)
    model = tiny_model(head="cnn", class_nb=3).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    with torch.enable_grad():
        attributions = gradient_methods.METHODS[name](logits_module(model), images, targets,
                                                      {**VALUES, "ig_steps": 200}, [0, 1])
    with torch.no_grad():
        change = (model(images)["output"] - model(torch.zeros_like(images))["output"])[[0, 1], targets]
    tolerance = 1e-4 if name == "deeplift" else 2e-2
    assert torch.allclose(attributions.detach().sum(dim=(1, 2, 3)), change, atol=tolerance * change.abs().max())


def test_occlusion_sizes_its_square_per_side_on_a_non_square_image_and_map():
    """A 32 x 64 image whose map is 2 x 8: a cell is 16 px high and 8 px wide, so one cell's square is 16 x 8
    and half a cell's stride 8 x 4 (worked by hand), as captum is then called directly."""
    torch.manual_seed(0)
    model = tiny_model(head="cnn", class_nb=3, resnet_stride=1).eval()
    images, targets = torch.randn(2, 3, 32, 64), torch.tensor([1, 2])
    values = {**VALUES, "map_size": lambda model, images: (2, 8)}
    with torch.enable_grad():
        ours = gradient_methods.occlusion(LogitsOnly(model), images, targets, values, [0, 1])
    expected = captum_attr.Occlusion(logits_module(model)).attribute(
        images, sliding_window_shapes=(3, 16, 8), strides=(3, 8, 4), target=targets, baselines=0)
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cells,stride,map_size,refused", [
    (1.0, 0.5, (4, 4), None), (1.0, 1.0, (1, 1), None), (1.0, 2.0, (4, 4), "--occlusion_stride_cells 2.0"),
    (3.0, 1.0, (2, 8), "wider than the model's 2 x 8 map"), (2.0, 1.0, (2, 8), None)])
def test_occlusion_options_are_checked_against_each_other_and_the_map(cells, stride, map_size, refused):
    """What captum would refuse with a traceback (a stride longer than the square, a square wider than the map)
    is one line before anything runs; what it accepts passes."""
    message = SOURCES["occlusion"].check({"occlusion_cells": cells, "occlusion_stride_cells": stride}, map_size)
    assert (message is None) if refused is None else (refused in message and "\n" not in message)
