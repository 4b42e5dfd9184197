"""What the gradient family of post-hoc saliency sources (brnpa/metrics/saliency.py) computes: captum's attribution
methods, wrapped, each at the image's resolution (docs/METHOD.md, "Gradient attributions").

Every method attributes the logit of the explained class to the input pixels, giving (B, 3, H, W); the map is
the absolute attribution summed over the colour channels, (B, H, W) (pixel_map). The baselines are captum's
default, 0, which in the normalised input is the ImageNet mean colour (the deletion curve's substrate).
Random draws (SmoothGrad's noise) come from (--seed, test index), so that an image's map does not depend on
the batch it is in.
"""
import warnings

import torch

from brnpa.metrics.saliency_methods import LogitsOnly

def pixel_map(attributions):
    """attributions (B, 3, H, W) -> (B, H, W) float32 on the CPU: |attribution| summed over the channels."""
    return attributions.detach().abs().sum(dim=1).float().cpu()


def gradient(module, images, targets, values, indices):
    """The gradient of the logit (Simonyan et al. 2014), captum's Saliency (its abs=True default)."""
    from captum.attr import Saliency
    return Saliency(module).attribute(images, target=targets)


def integrated_gradients(module, images, targets, values, indices):
    """Integrated Gradients (Sundararajan et al. 2017) from the zero baseline, --ig_steps steps of captum's
    default Gauss-Legendre rule, at most --att_metrics_batch_size interpolated images per forward pass."""
    from captum.attr import IntegratedGradients
    return IntegratedGradients(module).attribute(images, target=targets, n_steps=values["ig_steps"],
                                                 internal_batch_size=values["batch_size"])


def smoothgrad(module, images, targets, values, indices):
    """SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over --smoothgrad_samples noisy copies
    (Gaussian noise of standard deviation --smoothgrad_noise, in normalised input units), its magnitude taken
    after the mean (pixel_map), as the paper defines it; captum's NoiseTunnel over Saliency with abs=False
    (Saliency's default, abs=True, would average the magnitudes instead). One image at a time, its noise drawn
    from its seed (values['image_seed'](test index)); its copies in one pass."""
    from captum.attr import NoiseTunnel, Saliency
    tunnel = NoiseTunnel(Saliency(module))
    devices = [images.device] if images.device.type == "cuda" else []
    maps = []
    for image, target, index in zip(images, targets, indices):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(values["image_seed"](index))
            maps.append(tunnel.attribute(image[None], nt_type="smoothgrad", nt_samples=values["smoothgrad_samples"],
                                         stdevs=values["smoothgrad_noise"], target=int(target), abs=False))
    return torch.cat(maps)


def guided_backprop(module, images, targets, values, indices):
    """Guided Backpropagation (Springenberg et al. 2015): the gradient with every ReLU passing back only
    positive gradients, captum's GuidedBackprop."""
    from captum.attr import GuidedBackprop
    return GuidedBackprop(module).attribute(images, target=targets)


def input_x_gradient(module, images, targets, values, indices):
    """The input times its gradient (Shrikumar et al. 2016), captum's InputXGradient."""
    from captum.attr import InputXGradient
    return InputXGradient(module).attribute(images, target=targets)


def deeplift(module, images, targets, values, indices):
    """DeepLIFT's rescale rule (Shrikumar et al. 2017) from the zero baseline, captum's DeepLift. Its rule is set
    on each ReLU module, so the backbone uses each of its ReLU modules once (brnpa/models/resnet.py)."""
    from captum.attr import DeepLift
    return DeepLift(module).attribute(images, target=targets)


def occlusion(module, images, targets, values, indices):
    """Occlusion (Zeiler and Fergus 2014): the logit's drop when a square of --occlusion_cells map cells is set to
    0, slid by --occlusion_stride_cells cells (each rounded to whole pixels, at least 1), averaged over the
    squares covering each pixel; captum's Occlusion, at most --att_metrics_batch_size occluded images per
    forward pass."""
    from captum.attr import Occlusion
    height, width = images.shape[-2:]
    map_height, map_width = values["map_size"](module.model, images)
    window = tuple(max(1, round(values["occlusion_cells"] * side / cells))
                   for side, cells in ((height, map_height), (width, map_width)))
    stride = tuple(max(1, round(values["occlusion_stride_cells"] * side / cells))
                   for side, cells in ((height, map_height), (width, map_width)))
    return Occlusion(module).attribute(images, sliding_window_shapes=(images.shape[1], *window),
                                       strides=(images.shape[1], *stride), target=targets,
                                       perturbations_per_eval=max(1, values["batch_size"] // len(images)))


METHODS = {"gradient": gradient, "integratedgradients": integrated_gradients, "smoothgrad": smoothgrad,
           "guidedbackprop": guided_backprop, "inputxgradient": input_x_gradient, "deeplift": deeplift,
           "occlusion": occlusion}


def captum_source(name, values):
    """Source computing the method `name` (a key of METHODS) with the source values `values` (its options,
    'batch_size', 'image_seed': test index -> the seed of its draws, and 'map_size': (model, images) -> the
    model's map size (h, w)): (B, H, W) maps (pixel_map). Called with gradients enabled (its entry says so)."""
    method = METHODS[name]

    def saliency(model, images, classes, indices):
        targets = torch.as_tensor([int(c) for c in classes], device=images.device)
        with warnings.catch_warnings():  # captum's notices of what it does on every call, not of a problem
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            warnings.filterwarnings("ignore", message="Setting (forward, )?backward hooks")
            return pixel_map(method(LogitsOnly(model), images, targets, values, list(indices)))
    return saliency
