"""Helpers shared by the tests: the tiny configuration, tiny models and the way scripts are launched."""
import os
import sys

from brnpa.core.options import REPO_ROOT  # noqa: F401  (the tests import it from here)

TINY_CONFIG = """[default]
exp_id = e2e
dataset_train = tiny_train
dataset_val = tiny_train
dataset_test = tiny_test
class_nb = 3
train_prop = 0.75
img_size = 32
backbone = resnet18
resnet_chan = 8
resnet_stride = 1
optim = Adam
lr = 0.003
use_scheduler = False
batch_size = 8
max_batch_size_single_pass = 4
val_batch_size = 16
epochs = 2
max_worse_epoch_nb = 5
num_workers = 0
att_metrics_img_nb = 4
att_metrics_batch_size = 6
"""


def skip_unless_ci(reason):
    """Skip a test whose tool is missing, with the reason; under CI (the CI variable set), where .ci/run installs
    PostgreSQL, Chromium with its driver and saliency-maps-metrics, a missing tool fails the test instead, so
    that a green CI always ran it."""
    import pytest
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: .ci/run should have installed it")
    pytest.skip(reason)


def import_or_skip_unless_ci(module):
    """importlib.import_module(module), or skip_unless_ci when it is not installed."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as error:
        skip_unless_ci(f"{module} cannot be imported ({error})")


def tiny_options(**overrides):
    """trainVal.py's resolved options with a tiny model (resnet18 of width 8, 32 px, 5 classes, low-res maps)."""
    from brnpa.runs.args import build_parser, resolve_derived, with_changes
    options = build_parser().parse_args([])
    values = dict(backbone="resnet18", resnet_chan=8, class_nb=5, stride_lay3=2, stride_lay4=2, img_size=32,
                  cuda=False)
    options = with_changes(options, **{**values, **overrides})
    if "head" not in overrides:
        options.head = None
    return resolve_derived(options)


def tiny_model(**overrides):
    """The model of tiny_options(**overrides), built through the model table like a run builds it."""
    from brnpa.models.net import build_model
    from brnpa.runs.runtime import model_config
    return build_model(model_config(tiny_options(**overrides)))


def script_env(config=None):
    """The environment for launching a script: this test session's interpreter first on PATH (the scripts
    call python3), and CONFIG when given."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    if config is not None:
        env["CONFIG"] = str(config)
    return env


def blurred_by_hand(image):
    """The 121x121 box blur with zero padding, by an explicit window sum per pixel. image: (3, H, W)."""
    import torch
    _, height, width = image.shape
    padded = torch.zeros(3, height + 120, width + 120, dtype=image.dtype)
    padded[:, 60:60 + height, 60:60 + width] = image
    blurred = torch.zeros_like(image)
    for y in range(height):
        for x in range(width):
            blurred[:, y, x] = padded[:, y:y + 121, x:x + 121].sum(dim=(1, 2)) / 121 ** 2
    return blurred


def imputed_by_hand(image, removed):
    """ROAD's linear imputation without noise, by Jacobi iterations in float64 until nothing moves: each removed
    pixel becomes the mean of its 8 neighbours inside the image, weighted 2 (sides) and 1 (corners), the other
    pixels fixed; 0 where every pixel is removed. image: (3, H, W); removed: (H, W) bool."""
    import numpy as np
    import torch
    values, removed = image.double().numpy().copy(), removed.numpy()
    if removed.all():
        values[:, removed] = 0
        return torch.from_numpy(values).to(image.dtype)
    values[:, removed] = 0
    height, width = removed.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for _ in range(200000):
        padded = np.pad(values, ((0, 0), (1, 1), (1, 1)))
        inside = np.pad(np.ones((height, width)), 1)
        total, weights = np.zeros_like(values), np.zeros((height, width))
        for dy, dx in offsets:
            weight = 2.0 if dy == 0 or dx == 0 else 1.0
            total += weight * padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            weights += weight * inside[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
        updated = np.where(removed, total / weights, values)
        if np.abs(updated - values).max() < 1e-11:
            break
        values = updated
    return torch.from_numpy(values).to(image.dtype)


# Each baseline of metrics.perturbation, by hand: image (3, H, W) -> a function of the removed pixels (H, W) bool
# returning the image with those pixels replaced. A new baseline adds its line.
BASELINES_BY_HAND = {
    "mean": lambda image: lambda removed: image.masked_fill(removed, 0),
    "blur": lambda image: blur_where(image),
    "linear": lambda image: lambda removed: imputed_by_hand(image, removed),
}


def blur_where(image):
    """The blur baseline by hand: the blurred image (computed once) where removed, the image elsewhere."""
    import torch
    blurred = blurred_by_hand(image)
    return lambda removed: torch.where(removed, blurred, image)


def slow_curve(model, image, saliency, metric, step_cells, cells=None):
    """The curve of a curve metric (a metrics.curves.CurveMetric, or its key) computed the slow, obvious way from
    what its entry declares (its baseline, deletion or insertion, the order, the step rule), without its noise:
    one forward per step, cells painted by Python loops, the baseline by hand (BASELINES_BY_HAND). model:
    images -> logits. cells: the flat cell indices in the order they are perturbed (default: by decreasing
    saliency, or increasing for the least-first order, ties by index)."""
    import math
    import torch
    from brnpa.metrics.curves import CURVE_METRICS
    metric = CURVE_METRICS[metric] if isinstance(metric, str) else metric
    _, height, width = image.shape
    map_h, map_w = saliency.shape
    block_h, block_w = height // map_h, width // map_w
    cell_nb = map_h * map_w
    with torch.no_grad():
        cls = model(image.unsqueeze(0)).argmax(dim=1).item()
    if cells is None:
        sign = 1 if metric.least_first else -1
        cells = sorted(range(cell_nb), key=lambda c: (sign * float(saliency.flatten()[c]), c))
    if metric.steps == "cells":
        counts = [(step + 1) * step_cells for step in range(cell_nb // step_cells)]
    else:
        counts = [math.ceil(tenth * cell_nb / 10) for tenth in range(1, 10)]
    baseline = BASELINES_BY_HAND[metric.baseline](image)
    points = []
    for count in counts:
        perturbed = torch.zeros(height, width, dtype=torch.bool)
        for cell in cells[:count]:
            row, col = divmod(cell, map_w)
            perturbed[row * block_h:(row + 1) * block_h, col * block_w:(col + 1) * block_w] = True
        removed = ~perturbed if metric.insertion else perturbed
        current = baseline(removed)
        with torch.no_grad():
            score = torch.softmax(model(current.unsqueeze(0)), dim=1)[0, cls].item()
        points.append((cell_nb - count, score))
    return torch.tensor(points, dtype=torch.float64)


def transformed_test_images(options):
    """(images (N, 3, H, W), labels (N,)) of the test folder in test order, transformed here (resize to a square
    of img_size / crop_ratio, centre crop, ImageNet normalisation), independently of load_data."""
    import torch
    from PIL import Image
    from torchvision import transforms
    folder = os.path.join(options.data_dir, options.dataset_test)
    paths = [(os.path.join(folder, name, file), label) for label, name in enumerate(sorted(os.listdir(folder)))
             for file in sorted(os.listdir(os.path.join(folder, name)))]
    side = int(options.img_size / options.crop_ratio)  # truncated, as the authors resize
    transform = transforms.Compose([transforms.Resize((side, side)), transforms.CenterCrop(options.img_size),
                                    transforms.ToTensor(),
                                    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    images = torch.stack([transform(Image.open(path).convert("RGB")) for path, _ in paths])
    return images, torch.tensor([label for _, label in paths])


class Crash(BaseException):
    """A kill, injected."""


def crash_at(monkeypatch, count):
    """os.replace raises Crash at its count-th call (every write and every landing move goes through it)."""
    real_replace = os.replace
    calls = []

    def replace(source, target):
        calls.append(target)
        if len(calls) == count:
            raise Crash(target)
        real_replace(source, target)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def logits_module(net):
    """An nn.Module of images -> the logits of a models.net.Net (whose forward returns a dict), as the libraries
    the tests compare with (captum, pytorch-grad-cam, Quantus) want a model; written here, not taken from the
    code under test."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.net = wrapped

        def forward(self, images):
            return self.net(images)["output"]
    return Logits(net)



# The non-linear functions whose backward pass captum's Guided Backprop and DeepLIFT change when they are applied
# by a module (nn.ReLU, nn.Sigmoid, nn.MaxPool2d...), by the name of the torch function a forward pass calls.
NON_LINEAR_FUNCTIONS = frozenset({
    "relu", "relu_", "relu6", "elu", "elu_", "leaky_relu", "leaky_relu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "softplus", "softmax", "_softmax", "log_softmax", "gelu", "silu", "hardtanh", "hardswish", "max_pool1d",
    "max_pool2d", "max_pool3d", "_max_pool2d", "max_pool2d_with_indices", "boolean_dispatch"})


def non_linearities_outside_modules(model, images):
    """How a forward pass of model on images applies its non-linear functions (NON_LINEAR_FUNCTIONS), written
    independently of captum: (functional, reused). functional: 'function name in module path' for each call made
    outside a torch.nn activation or pooling module (a torch.relu in a head's forward); reused: the paths of the
    activation modules called more than once (DeepLIFT's rule is set per module call)."""
    import collections
    import torch
    from torch.overrides import TorchFunctionMode
    names = {module: name or "(model)" for name, module in model.named_modules()}
    stack, functional, calls = [], [], collections.Counter()

    def is_activation(module):  # a torch.nn activation or pooling module, or a subclass of one
        return any(cls.__module__ in ("torch.nn.modules.activation", "torch.nn.modules.pooling")
                   for cls in type(module).__mro__)

    def enter(module, args):
        stack.append(module)
        if is_activation(module):
            calls[names.get(module, type(module).__name__)] += 1

    def leave(module, args, output):
        stack.pop()

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if name in NON_LINEAR_FUNCTIONS and not (stack and is_activation(stack[-1])):
                where = names.get(stack[-1], type(stack[-1]).__name__) if stack else "(outside any module)"
                functional.append(f"{name} in {where}")
            return func(*args, **(kwargs or {}))

    pre = torch.nn.modules.module.register_module_forward_pre_hook(enter)
    post = torch.nn.modules.module.register_module_forward_hook(leave)
    try:
        with Watch(), torch.no_grad():
            model(images)
    finally:
        pre.remove()
        post.remove()
    return functional, sorted(name for name, count in calls.items() if count > 1)


def post_hoc_maps_of_set(folder, source, task_key="Del"):
    """The saved maps (N, h, w) of a post-hoc source that its set of task_key was computed with: the file its
    .json names (attMaps<source>_<tag>_test.npy), read here with the file name written out."""
    import json
    import numpy as np
    with open(os.path.join(folder, f"attMetr{task_key}_{source}.json")) as file:
        tag = json.load(file)["maps_tag"]
    return np.load(os.path.join(folder, f"attMaps{source}_{tag}_test.npy"))
