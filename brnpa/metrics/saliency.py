"""Saliency sources behind one signature, chosen by name (docs/METHOD.md, "Post-hoc saliency").

Every source is a callable

    saliency(model, images, classes, indices) -> (B, h, w) float tensor on the CPU

for a batch of images (B, 3, H, W) on the model's device, the class to explain for each image, and
the images' indices in the test set. h x w is the source's own resolution, which its entry declares:
'map', the model's feature-map size, or 'pixels', the image's H x W. The curves perturb map cells, so
they see a pixel-resolution map average-pooled to the map size (pooled_to); the sanity checks use each
map at its own resolution. The curve code gets saliencies and never asks which source made them:
- own_maps: the model's own saved maps (map 0 times the norm, or the B-CNN mean times the norm);
- the CAMs of pytorch-grad-cam (Grad-CAM, Grad-CAM++, XGrad-CAM, Score-CAM, Ablation-CAM,
  Eigen-CAM) on the last backbone stage, kept at the feature-map resolution;
- the gradient family of captum (the gradient, Integrated Gradients, SmoothGrad, Guided Backpropagation,
  Input x Gradient, DeepLIFT, Occlusion), at pixel resolution (brnpa/metrics/gradient_methods.py);
- RISE (Petsiuk et al. 2018), batched here, at pixel resolution;
- three floors: random, center and edges.

The tasks call a source under torch.no_grad(), on the model in eval mode, with at most
--att_metrics_batch_size images; a source whose entry says gradients=True is called with gradients
enabled (SaliencySource.function), so that it can differentiate the model's output.

They are registered in SOURCES, the table at the end of this module: each entry has its name, how to
build it, its own options (added to trainVal.py's options by brnpa/runs/args.py), the values that identify its
results, whether it needs gradients and its resolution. Adding a source means writing its builder here and
adding one SaliencySource to SOURCES.

This module is read by `trainVal.py --help`, which must not wait for torch: it imports torch nowhere at
its top, and a builder imports what its source needs when it is called (the built-in sources' computations
are in brnpa/metrics/saliency_methods.py and brnpa/metrics/gradient_methods.py). tests/unit/test_tables.py checks that
the option table imports without torch.
"""
import dataclasses
import functools
import os
import re
from typing import Any, Callable, Optional

from brnpa.core.options import Option, at_least, optional_str, positive_finite, within


def live_own_maps(head):
    """The own-maps source computed from the model it is given (the maps and norm of its forward pass, the same
    rule as metrics.perturbation.saliencies_from_maps) rather than read from the saved arrays: for the sanity
    checks, where the model is randomised. Class-agnostic, like the head's maps."""
    def saliency(model, images, classes, indices):
        import torch
        from brnpa.metrics.perturbation import saliency_map
        with torch.no_grad():
            result = model(images)
        return torch.stack([saliency_map(maps, norm, head) for maps, norm
                            in zip(result["att_maps"].float().cpu(), result["norm"].float().cpu())])
    return saliency


@dataclasses.dataclass(frozen=True)
class SourceInputs:
    """What a source's builder may use. values: the source's own options (by name) plus 'seed', 'batch_size'
    (images per forward pass), 'val_batch_size' (images per batch of the test pass), 'test_files' (the test
    images' paths in the test folder, in test order) and 'task' (the key of the task asked for); att_maps, norms: the
    model's saved test maps (N, M, h, w) and norms (N, 1, h, w); head: the model's head class (models.heads);
    test_images: () -> iterable of batches (B, 3, H, W) of the whole test set in test order, on the model's
    device (the batches of the test pass)."""
    values: dict
    att_maps: Any = None
    norms: Any = None
    head: Any = None
    test_images: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class SaliencySource:
    """One saliency source. build(SourceInputs) -> saliency(model, images, classes, indices).
    options: its own trainVal.py options (not run-defining). identity: the names in SourceInputs.values that
    identify its results (its curves are remade when one changes). post_hoc: computed from the model rather
    than read from its saved maps; its results are saved as '<model_id>-<name>' and its maps kept (at the map
    size). gradients: it differentiates the model, so it is called with gradients enabled. resolution: 'map'
    (its maps are at the model's feature-map size), 'pixels' (at the image's size) or 'given' (at the size of the
    precomputed maps it reads). check (optional):
    check(values, map size (h, w)) -> None, or the one-line message refusing these values on maps of that size;
    the tasks call it before anything is computed."""
    name: str
    build: Callable[[SourceInputs], Callable]
    description: str
    options: tuple = ()
    identity: tuple = ()
    post_hoc: bool = True
    gradients: bool = False
    resolution: str = "map"
    check: Optional[Callable] = None

    def identify(self, values):
        """{name: value} of the values that identify this source's results."""
        return {name: values[name] for name in self.identity}

    def function(self, inputs):
        """saliency(model, images, classes, indices) built from inputs (SourceInputs), as the tasks call it:
        with gradients enabled when the entry says gradients=True (the tasks run under torch.no_grad()).
        Attributes of the built function (a released saliency's .order) are kept."""
        saliency = self.build(inputs)
        if not self.gradients:
            return saliency

        @functools.wraps(saliency)
        def with_gradients(model, images, classes, indices):
            import torch
            with torch.enable_grad():
                return saliency(model, images, classes, indices)
        return with_gradients


# 'given': the size the maps were given at (precomputed maps), seen by the curves pooled to the map size as
# 'pixels' is.
RESOLUTIONS = ("map", "pixels", "given")


def pooled_to(saliency, size):
    """The source `saliency` with each map (B, H, W) average-pooled to size (h, w), a cell the mean of its block
    of pixels: how the curves, which perturb the model's map cells, see a pixel-resolution source."""
    @functools.wraps(saliency)
    def pooled(model, images, classes, indices):
        import torch.nn.functional as F
        maps = saliency(model, images, classes, indices)
        return F.adaptive_avg_pool2d(maps[:, None], tuple(size))[:, 0]
    return pooled


def build_cam(name):
    def build(inputs):
        from brnpa.metrics.saliency_methods import cam_source
        return cam_source(name, inputs.values["batch_size"])
    return build


def build_captum(name):
    def build(inputs):
        from brnpa.metrics.gradient_methods import captum_source
        seed = inputs.values["seed"]
        return captum_source(name, {**inputs.values, "image_seed": lambda index: image_seed(seed, index),
                                    "map_size": map_size})
    return build


def check_occlusion(values, map_size):
    """Occlusion's square against its stride and the map: captum refuses a stride longer than the square and a
    square wider than the image."""
    cells, stride = values["occlusion_cells"], values["occlusion_stride_cells"]
    if stride > cells:
        return (f"--occlusion_stride_cells {stride} is longer than the square it moves (--occlusion_cells {cells}): "
                f"some pixels would never be occluded; give a stride of at most {cells}")
    if cells > min(map_size):
        return (f"--occlusion_cells {cells} is wider than the model's {map_size[0]} x {map_size[1]} map: give at "
                f"most {min(map_size)}")
    return None


def check_maps(values, map_size):
    """Precomputed maps: a file or folder given, holding one finite map per test image (values['test_files'], the
    test images' paths in the test folder), and not asked for the sanity checks (values['task']), which need maps
    computed again from a randomised model."""
    path = values["maps"]
    if path is None:
        return ("--att_metrics_post_hoc maps needs --maps FILE.npy, the maps (N, h, w) of the N test images in "
                "test order")
    if values.get("task") == "Sanity":
        return (f"the sanity checks need maps computed again from a randomised model, which {path} cannot give: "
                f"score precomputed maps with the other tasks")
    if os.path.isdir(path):
        return maps_folder_refusal(path, values["test_files"])
    return maps_file_refusal(path, len(values["test_files"]))


def map_file_of(folder, test_file):
    """The precomputed map of a test image in a folder of maps: its path relative to the test folder, with .npy
    for its extension (class_03/bird_17.jpg -> <folder>/class_03/bird_17.npy)."""
    return os.path.join(folder, os.path.splitext(test_file)[0] + ".npy")


def maps_folder_refusal(folder, test_files):
    """Why a folder of precomputed maps cannot be scored (one line), or None: one .npy (h, w) per test image
    (map_file_of), all of one size."""
    import numpy as np
    shapes = set()
    for test_file in test_files:
        path = map_file_of(folder, test_file)
        if not os.path.isfile(path):
            return (f"--maps {folder} has no map for test image {test_file}: expected {path}, one .npy (h, w) per "
                    f"test image at its path in the test folder")
        try:
            single = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            return f"--maps: {path} is not a readable .npy file ({error})"
        if single.ndim != 2:
            return f"--maps: {path} holds {single.shape}; expected one map (h, w)"
        if not np.isfinite(single).all():
            return f"--maps: {path} holds a nan or an inf: a map ranks its cells by finite values"
        shapes.add(single.shape)
    if len(shapes) > 1:
        return f"--maps {folder} holds maps of several sizes ({', '.join(map(str, sorted(shapes)))}): give one size"
    return None


def maps_file_refusal(path, test_nb):
    """Why a precomputed maps file cannot be scored (one line), or None: it must be a .npy of (N, h, w) numbers,
    N the test images, in test order."""
    import numpy as np
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        return f"--maps {path} is not a readable .npy file ({error})"
    if maps.ndim != 3 or maps.dtype.kind not in "fiu":
        return (f"--maps {path} holds {maps.dtype} {tuple(maps.shape)}; expected numbers (N, h, w), one map per test "
                f"image")
    if len(maps) != test_nb:
        return (f"--maps {path} holds {len(maps)} maps but the test folder has {test_nb} images: one map per test "
                f"image, in test order (sorted classes, then sorted file names)")
    bad = [index for index, single in enumerate(maps) if not np.isfinite(single).all()]
    if bad:
        return (f"--maps {path} holds a nan or an inf in the maps of test images {', '.join(map(str, bad[:5]))}"
                f"{' ...' if len(bad) > 5 else ''}: a map ranks its cells by finite values")
    return None


def build_maps(inputs):
    """Precomputed maps, read from --maps: a .npy (N, h, w), one map per test image in test order (each image's
    map is its row), or a folder of one .npy (h, w) per test image (map_file_of), whatever the model. At the
    size they were given at ('given'): the curves see them average-pooled to the model's map size (unchanged
    when they already have its size)."""
    import numpy as np
    path, test_files = inputs.values["maps"], inputs.values["test_files"]
    if os.path.isdir(path):
        def read(index):
            return np.load(map_file_of(path, test_files[index]), allow_pickle=False)
    else:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)

        def read(index):
            return maps[index]

    def saliency(model, images, classes, indices):
        import torch
        return torch.from_numpy(np.stack([np.asarray(read(int(index)), dtype=np.float32) for index in indices]))
    return saliency


def build_rise(inputs):
    from brnpa.metrics.saliency_methods import rise_source
    values = inputs.values
    return rise_source(values["rise_masks"], values["rise_grid"], values["rise_keep_prob"], values["seed"],
                       values["batch_size"])


def build_own_maps(inputs):
    from brnpa.metrics.saliency_methods import own_maps, released_own_maps
    if inputs.values["att_metrics_saliency"] == "released":
        return released_own_maps(inputs.test_images, inputs.head)
    return own_maps(inputs.att_maps, inputs.norms, inputs.head)


def map_size(model, images):
    """(h, w) of the model's maps, from one forward pass of the first image."""
    import torch
    with torch.no_grad():
        return tuple(model(images[:1])["att_maps"].shape[-2:])


def image_seed(seed, index):
    """The seed of what is drawn for test image `index` under --seed: a different one for every pair (test
    indices below 1,000,003)."""
    return seed * 1_000_003 + int(index)


def build_random(inputs):
    """The random floor: i.i.d. uniform noise at the map size, drawn from (seed, test index), so that an image
    gets the same map on a rerun, whatever the batch it is in."""
    seed = inputs.values["seed"]

    def saliency(model, images, classes, indices):
        import torch
        height, width = map_size(model, images)
        return torch.stack([torch.rand(height, width, generator=torch.Generator().manual_seed(
            image_seed(seed, index))) for index in indices])
    return saliency


def build_center(inputs):
    """The centre floor: a Gaussian centred on the map, of standard deviation center_sigma times the half-side
    of the map, the same for every image and every model."""
    sigma = inputs.values["center_sigma"]

    def saliency(model, images, classes, indices):
        import torch
        from brnpa.core.errors import UserError
        height, width = map_size(model, images)
        rows = torch.linspace(-1, 1, height)[:, None]
        cols = torch.linspace(-1, 1, width)[None, :]
        distances = rows ** 2 + cols ** 2  # all equal on a 2 x 2 map, say: constant whatever the width
        # sigma * sigma, not sigma ** 2: past 1e154 it is inf (a constant map, said below), not an OverflowError
        prior = torch.exp(-distances / (2 * sigma * sigma))
        if distances.min() < distances.max() and prior.max() == prior.min():
            raise UserError(f"--center_sigma {sigma} gives the same value on every cell of the {height} x {width} "
                            f"map (float32), so the map ranks no cell before another: choose a value nearer 0.5")
        return prior.expand(len(images), height, width).clone()
    return saliency


def build_edges(inputs):
    """The edge floor: the Sobel gradient magnitude of the image (its channels averaged), at pixel resolution
    (the curves see it average-pooled to the map size). It knows the image, not the model (docs/METHOD.md,
    "Floors")."""
    def saliency(model, images, classes, indices):
        import torch
        import torch.nn.functional as F
        gray = images.float().mean(dim=1, keepdim=True).cpu()
        sobel_x = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
        kernels = torch.stack([sobel_x, sobel_x.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
        gradients = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
        return gradients.pow(2).sum(dim=1).sqrt()
    return saliency


OWN_MAPS = "own_maps"
SOURCES = {source.name: source for source in [
    SaliencySource(OWN_MAPS, build_own_maps, "the model's own saved maps times the feature norm", post_hoc=False,
                   options=(Option("att_metrics_saliency", str, "float", choices=("float", "released"),
                                   run_defining=False,
                                   help="float: the saved maps, map x norm in floating point; released: the maps "
                                        "as the authors' released code saved them (truncated, computed again "
                                        "from the model in batches of --val_batch_size), its uint8 arithmetic "
                                        "(the product wraps modulo 256) and its topk order, to compare with "
                                        "numbers it produced"),),
                   identity=("att_metrics_saliency", "val_batch_size")),  # the released maps' test batches
    SaliencySource("gradcam", build_cam("gradcam"), "Grad-CAM (pytorch-grad-cam)", gradients=True),
    SaliencySource("gradcampp", build_cam("gradcampp"), "Grad-CAM++ (pytorch-grad-cam)", gradients=True),
    SaliencySource("xgradcam", build_cam("xgradcam"), "XGrad-CAM (pytorch-grad-cam)", gradients=True),
    SaliencySource("scorecam", build_cam("scorecam"), "Score-CAM (pytorch-grad-cam)", gradients=True),
    SaliencySource("ablationcam", build_cam("ablationcam"), "Ablation-CAM (pytorch-grad-cam)", gradients=True),
    SaliencySource("eigencam", build_cam("eigencam"), "Eigen-CAM (pytorch-grad-cam)", gradients=True),
    SaliencySource("gradient", build_captum("gradient"), "the gradient's magnitude (captum Saliency)",
                   gradients=True, resolution="pixels"),
    SaliencySource("integratedgradients", build_captum("integratedgradients"),
                   "Integrated Gradients from the zero baseline (captum)",
                   options=(Option("ig_steps", int, 50, "integratedgradients: steps of the path integral (captum's "
                                   "default)", run_defining=False, **at_least(1)),),
                   identity=("ig_steps",), gradients=True, resolution="pixels"),
    SaliencySource("smoothgrad", build_captum("smoothgrad"), "SmoothGrad, the gradient over noisy copies (captum "
                   "NoiseTunnel), seeded per image",
                   options=(Option("smoothgrad_samples", int, 5, "smoothgrad: noisy copies per image (captum's "
                                   "default)", run_defining=False, **at_least(1)),
                            Option("smoothgrad_noise", float, 1.0, "smoothgrad: standard deviation of the noise, in "
                                   "normalised input units (captum's default)", run_defining=False,
                                   **positive_finite())),
                   identity=("smoothgrad_samples", "smoothgrad_noise", "seed"), gradients=True, resolution="pixels"),
    SaliencySource("guidedbackprop", build_captum("guidedbackprop"), "Guided Backpropagation (captum)",
                   gradients=True, resolution="pixels"),
    SaliencySource("inputxgradient", build_captum("inputxgradient"), "the input times its gradient (captum)",
                   gradients=True, resolution="pixels"),
    SaliencySource("deeplift", build_captum("deeplift"), "DeepLIFT from the zero baseline (captum)",
                   gradients=True, resolution="pixels"),
    SaliencySource("occlusion", build_captum("occlusion"), "Occlusion, the logit's drop under a sliding square "
                   "(captum)",
                   options=(Option("occlusion_cells", float, 1.0, "occlusion: side of the occluding square, in "
                                   "cells of the model's map (captum has no default)", run_defining=False,
                                   **positive_finite()),
                            Option("occlusion_stride_cells", float, 0.5, "occlusion: step of the square, in cells "
                                   "of the model's map", run_defining=False, **positive_finite())),
                   identity=("occlusion_cells", "occlusion_stride_cells"), resolution="pixels",
                   check=check_occlusion),
    SaliencySource("rise", build_rise, "RISE, seeded random masks", resolution="pixels",
                   options=(Option("rise_masks", int, 4000, "RISE: number of random masks", run_defining=False,
                                   **at_least(1)),
                            Option("rise_grid", int, 7, "RISE: side of the coarse grid of a mask",
                                   run_defining=False, **at_least(1)),
                            Option("rise_keep_prob", float, 0.5, "RISE: probability of keeping a grid cell",
                                   run_defining=False, **within(0, 1, low_open=True))),
                   identity=("rise_masks", "rise_grid", "rise_keep_prob", "seed")),
    SaliencySource("maps", build_maps, "precomputed maps of the test images (--maps), named with a label: maps.mine",
                   options=(Option("maps", optional_str, None, "maps: a .npy file of the maps (N, h, w) of the N test "
                                   "images in test order, or a folder of one .npy (h, w) per test image at its "
                                   "path in the test folder, scored as --att_metrics_post_hoc maps.LABEL",
                                   run_defining=False),),
                   identity=("maps",), resolution="given", check=check_maps),
    SaliencySource("random", build_random, "floor: uniform noise, seeded per image", identity=("seed",)),
    SaliencySource("center", build_center, "floor: a centred Gaussian, the same for every image",
                   options=(Option("center_sigma", float, 0.5, "center: standard deviation of the Gaussian, in "
                                   "half-sides of the map", run_defining=False, **positive_finite()),),
                   identity=("center_sigma",)),
    SaliencySource("edges", build_edges, "floor: the image's Sobel edges", resolution="pixels"),
]}
POST_HOC_NAMES = tuple(name for name, source in SOURCES.items() if source.post_hoc)


# A post-hoc method may carry a label, '<method>.<label>': precomputed maps named by the user ('maps.mine'), or
# two configurations of one method kept apart ('gradcam.a').
METHOD_LABEL = re.compile(r"[A-Za-z0-9_]+")


def is_post_hoc_method(name, post_hoc_names=POST_HOC_NAMES):
    """Whether name is a post-hoc method of post_hoc_names, alone or with a '.<label>' of METHOD_LABEL."""
    base, dot, label = name.partition(".")
    return base in post_hoc_names and (not dot or METHOD_LABEL.fullmatch(label) is not None)


def saliency_source(name):
    """The source registered under name, or under its part before a '.LABEL' (a labelled post-hoc method);
    ValueError listing the post-hoc sources otherwise."""
    base = name.partition(".")[0]
    if base not in SOURCES:
        raise ValueError(f"--att_metrics_post_hoc must be one of {', '.join(POST_HOC_NAMES)}, got '{name}'")
    return SOURCES[base]
