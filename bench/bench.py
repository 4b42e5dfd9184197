"""Speed benchmark: the project's training, test pass and DAUC against bare-backbone floors.

Prints one table and the ratios, all measured in this run on one device:
  - train: images/s of a real epoch (loader, augmentation, head, loss, optimiser,
    bookkeeping: training.train_one_epoch) over the bare backbone's train step
    on random tensors, same resolution and batch;
  - test: images/s of the test pass (training.evaluate with maps) over bare inference;
  - DAUC: seconds per image, batched vs one forward per step, and over the floor
    (steps / bare inference images/s);
  - loader: images/s of the training loader alone (decode + augment);
  - BR-NPA grouping time over the backbone forward at the high-res map size;
  - float32 against --amp_eval (bf16): the largest difference of one image's DAUC and IAUC,
    same model, images and saliency;
  - seconds per image of each post-hoc saliency (brnpa/metrics/saliency.py) of the cnn model.
Evaluation (test pass, bare inference, DAUC) runs in float32 unless --extra has '--amp_eval True'.
Synthetic JPEG files (CUB-like size, 500x375) are written to a temporary folder.

    python3 -m bench.bench                  # CPU: small sizes (resnet18, chan 16, 64 px, conv1 stride 1)
    python3 -m bench.bench --preset gpu     # CUDA: resnet50, 448 px, the reference batches
(from the repository root, or anywhere after pip install -e .)
"""
import argparse
import importlib.util
import os
import sys
import tempfile
import time

if not __package__:  # started as a file: the project's modules are importable only as a package
    sys.exit("error: run it from the repository root as python3 -m bench.bench (or anywhere after pip install -e .)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from brnpa.runs.args import parse_args, with_changes
from brnpa.jobs.attention_metrics import step_plan
from brnpa.data.load_data import build_transform, load_rgb, make_loader, make_train_loader
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.saliency import POST_HOC_NAMES, SourceInputs, saliency_source
from brnpa.models.br_npa import representative_vectors
from brnpa.models.net import build_model
from brnpa.models.resnet import build_resnet
from brnpa.runs.runtime import autocast, data_config, memory_format, model_config, prepare_model
from brnpa.jobs.training import build_optimizer, evaluate, step_config, train_one_epoch

PRESETS = {
    "cpu": dict(backbone="resnet18", chan=16, img_size=64, resnet_stride=1, train_batch_low=32,
                train_batch_high=12, infer_batch=64, images=256, dauc_images=4, workers=2),
    "gpu": dict(backbone="resnet50", chan=64, img_size=448, resnet_stride=2, train_batch_low=32,
                train_batch_high=12, infer_batch=64, images=1024, dauc_images=8, workers=8),
}
MODELS = {"cnn": ("--head cnn", "low"), "b_cnn": ("--head b_cnn", "low"), "br_npa_low": ("--head br_npa", "low"),
          "br_npa_high": ("--head br_npa", "high")}
STRIDES = {"low": (2, 2, 2), "high": (2, 1, 1)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device, repeats):
    """Seconds per call of function() after one warm-up call."""
    function()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    sync(device)
    return (time.perf_counter() - start) / repeats


def make_jpegs(folder, count, class_nb=4):
    rng = np.random.default_rng(0)
    for i in range(count):
        class_folder = os.path.join(folder, f"c{i % class_nb}")
        os.makedirs(class_folder, exist_ok=True)
        pixels = rng.integers(0, 256, size=(375 // 5, 500 // 5, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((500, 375)).save(os.path.join(class_folder, f"{i:05d}.jpg"), quality=90)
    return [(os.path.join(folder, f"c{i % class_nb}", f"{i:05d}.jpg"), i % class_nb) for i in range(count)]


def bare_backbone(opts, res, device, args):
    strides = STRIDES[res]
    net = build_resnet(opts.backbone, chan=opts.chan, stride=opts.resnet_stride, stride_lay2=strides[0],
                       stride_lay3=strides[1], stride_lay4=strides[2]).to(device)
    if args.channels_last and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def random_batch(batch, size, device, args):
    images = torch.randn(batch, 3, size, size, device=device)
    if args.channels_last and device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def bare_train_rate(opts, res, batch, device, args):
    net = bare_backbone(opts, res, device, args).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    images = random_batch(batch, opts.img_size, device, args)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, args.amp):
            loss = net(images).float().mean()
        loss.backward()
        optimizer.step()
    return batch / timed(step, device, opts.repeats)


def bare_infer_rate(opts, res, batch, device, args):
    net = bare_backbone(opts, res, device, args).eval()
    images = random_batch(batch, opts.img_size, device, args)

    @torch.no_grad()
    def step():
        with autocast(device, args.amp_eval):
            net(images)
    return batch / timed(step, device, opts.repeats)


def model_args(opts, name, batch, extra):
    options, res = MODELS[name]
    strides = STRIDES[res]
    argv = (f"--backbone {opts.backbone} --resnet_chan {opts.chan} --resnet_stride {opts.resnet_stride} "
            f"--img_size {opts.img_size} --class_nb 4 "
            f"--stride_lay2 {strides[0]} --stride_lay3 {strides[1]} --stride_lay4 {strides[2]} "
            f"--batch_size {batch} --max_batch_size_single_pass {batch} --val_batch_size {opts.infer_batch} "
            f"--num_workers {opts.workers} --optim SGD {options} {extra}").split()
    return parse_args(argv), res


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each bare step")
    parser.add_argument("--extra", default="", help="more trainVal.py options, e.g. '--amp False'")
    opts = parser.parse_args()
    for key, value in PRESETS[opts.preset].items():
        setattr(opts, key, value)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} threads), preset {opts.preset}, torch {torch.__version__}, "
          f"options '{opts.extra}'")
    rows, amp_eval_gaps = [], []
    with tempfile.TemporaryDirectory() as folder:
        samples = make_jpegs(folder, opts.images)
        for name, (_, res) in MODELS.items():
            batch = opts.train_batch_low if res == "low" else opts.train_batch_high
            args, _ = model_args(opts, name, batch, opts.extra)
            layout = memory_format(args.channels_last, device)
            model = prepare_model(build_model(model_config(args)), device, layout)
            _, geometry, augmentation = data_config(args)
            pin = device.type == "cuda"
            loader = make_train_loader(samples, build_transform(geometry, augmentation), batch, args.seed,
                                       args.num_workers, pin)
            optimizer = build_optimizer(model.parameters(), "SGD", 1e-3, 0.9)
            step = step_config(args, device)
            train_one_epoch(model, loader, optimizer, device, step)  # warm-up
            sync(device)
            start = time.perf_counter()
            train_one_epoch(model, loader, optimizer, device, step)
            sync(device)
            train_rate = len(samples) / (time.perf_counter() - start)
            bare_train = bare_train_rate(opts, res, batch, device, args)
            test_loader = make_loader(samples, build_transform(geometry), opts.infer_batch, args.num_workers, pin)
            evaluate(model, test_loader, device, args.nll_weight, args.amp_eval, layout, collect_maps=True)
            sync(device)
            start = time.perf_counter()
            evaluate(model, test_loader, device, args.nll_weight, args.amp_eval, layout, collect_maps=True)
            sync(device)
            test_rate = len(samples) / (time.perf_counter() - start)
            bare_infer = bare_infer_rate(opts, res, opts.infer_batch, device, args)
            rows.append((f"train epoch {name} (batch {batch})", train_rate, bare_train))
            rows.append((f"test pass {name} (batch {opts.infer_batch})", test_rate, bare_infer))
            if name.startswith("br_npa"):
                rows += dauc_rows(model, samples, args, opts, device, bare_infer)
                amp_eval_gaps.append((name, amp_eval_auc_gap(model, samples, args, opts, device)))
            if name == "br_npa_low":
                loader_rate = loader_only_rate(loader)
            if name == "cnn":
                post_hoc_rows = post_hoc_seconds(model, samples, args, opts, device)
            if name == "br_npa_high":
                rows.append(grouping_row(model, args, opts, device))
    print(f"\n{'workload':<54} {'measured':>12} {'reference':>12} {'ratio':>7}")
    for label, measured, reference in rows:
        print(f"{label:<54} {measured:>12.4g} {reference:>12.4g} {measured / reference:>7.3f}")
    print(f"{'loader alone (img/s, ' + str(opts.workers) + ' workers)':<54} {loader_rate:>12.4g}")
    for method, seconds in post_hoc_rows:
        print(f"{'post-hoc saliency of cnn, ' + method + ' (s/img)':<54} {seconds:>12.4g}")
    for name, (dauc_gap, iauc_gap) in amp_eval_gaps:
        print(f"{'float32 vs --amp_eval, largest |AUC diff| ' + name:<54} DAUC {dauc_gap:.4f}  IAUC {iauc_gap:.4f}")
    print("train/test rows: img/s over bare backbone img/s (goal >= 0.85). DAUC: speed-up of batching "
          "(goal >= 10) and batched time over the floor = steps / bare inference img/s (goal <= 1.3). "
          "grouping: representative_vectors time over the backbone forward (goal <= 0.05).")


def loader_only_rate(loader):
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def dauc_inputs(model, samples, args, opts, device):
    """(images, random saliencies, cells per step) for the DAUC rows, with --att_metrics_few_steps (as many
    steps as a low-res map of the input has cells: one cell per step for low-res maps, 16 for high-res)."""
    model.eval()
    transform = build_transform(data_config(args)[1])
    images = [transform(load_rgb(samples[i][0])).to(device) for i in range(opts.dauc_images)]
    height, width = model(images[0][None])["att_maps"].shape[2:]
    generator = torch.Generator().manual_seed(0)
    saliencies = [torch.rand(height, width, generator=generator) for _ in images]
    step_cells, _ = step_plan(with_changes(args, att_metrics_few_steps=True), height, width)
    return images, saliencies, step_cells


def post_hoc_seconds(model, samples, args, opts, device):
    """[(method, seconds per image)] of every post-hoc source on the DAUC images, one batch (RISE: 4000 masks)."""
    images, _, _ = dauc_inputs(model, samples, args, opts, device)
    images = torch.stack(images)
    classes = model(images)["output"].argmax(dim=1).tolist()
    methods = POST_HOC_NAMES
    if importlib.util.find_spec("pytorch_grad_cam") is None:  # gpu_check.sh installs nothing: RISE only
        methods = ("rise",)
        print("post-hoc CAM rows skipped: pytorch-grad-cam (pip package grad-cam) is not installed")
    rows = []
    for method in methods:
        source = saliency_source(method)
        values = {option.name: getattr(args, option.name) for option in source.options}
        source = source.build(SourceInputs({**values, "seed": args.seed, "batch_size": opts.infer_batch,
                                            "val_batch_size": args.val_batch_size}))
        rows.append((method, timed(lambda: source(model, images, classes, None), device, 1) / len(images)))
    return rows


def forward_in(model, device, bf16):
    def forward(batch):
        with autocast(device, bf16):
            return model(batch)["output"]
    return forward


@torch.no_grad()
def amp_eval_auc_gap(model, samples, args, opts, device):
    """Largest |AUC float32 - AUC bf16| over the DAUC images, for Del and Add."""
    images, saliencies, step_cells = dauc_inputs(model, samples, args, opts, device)
    classes = [0] * len(images)
    gaps = []
    for metric in (CURVE_METRICS["Del"], CURVE_METRICS["Add"]):
        curves = [metric.records(forward_in(model, device, bf16), images, saliencies, classes, step_cells,
                                 opts.infer_batch)["curves"] for bf16 in (False, True)]
        gaps.append(max(abs(metric.summarise(a.numpy()) - metric.summarise(b.numpy())) for a, b in zip(*curves)))
    return gaps


@torch.no_grad()
def dauc_rows(model, samples, args, opts, device, bare_infer):
    """Batched vs one forward per step, same images, plus the floor."""
    images, saliencies, step_cells = dauc_inputs(model, samples, args, opts, device)
    height, width = saliencies[0].shape
    classes = [0] * len(images)
    step_nb = height * width // step_cells
    forward = forward_in(model, device, args.amp_eval)

    def run(batch_size):
        sync(device)
        start = time.perf_counter()
        CURVE_METRICS["Del"].records(forward, images, saliencies, classes, step_cells, batch_size)
        sync(device)
        return (time.perf_counter() - start) / len(images)
    run(opts.infer_batch)
    batched, one_by_one = run(opts.infer_batch), run(1)
    floor = step_nb / bare_infer
    label = f"DAUC {height}x{width}, {step_nb} steps, s/img:"
    return [(f"{label} one-per-step / batched", one_by_one, batched), (f"{label} batched / floor", batched, floor)]


def grouping_row(model, args, opts, device):
    features = model.backbone(random_batch(opts.train_batch_high, opts.img_size, device, args)).detach()
    images = random_batch(opts.train_batch_high, opts.img_size, device, args)

    @torch.no_grad()
    def backbone():
        with autocast(device, args.amp):
            model.backbone(images)

    @torch.no_grad()
    def grouping():
        representative_vectors(features, 3)
    size = "x".join(map(str, features.shape[2:]))
    return (f"BR-NPA grouping {size} s vs backbone s", timed(grouping, device, opts.repeats),
            timed(backbone, device, opts.repeats))


if __name__ == "__main__":
    main()
