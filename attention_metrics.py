"""Compute and save the DAUC / IAUC curves of a trained model (--attention_metrics Del|Add)."""
import os

import numpy as np
import torch

import results_io
from args import HPARAM_NAMES, load_config, with_changes
from load_data import build_transform, make_loader, scan_folder
from metrics.perturbation import cells_per_step, perturbation_curves, saliency_map
from models.net import build_model, model_type
from runtime import autocast, get_device, load_checkpoint, memory_format, progress


def choose_images(image_nb, total, seed):
    """Sorted indices of the evaluated test images: a seeded choice without replacement (-1: all)."""
    if image_nb == -1 or image_nb >= total:
        return np.arange(total)
    if image_nb < 1:
        raise ValueError(f"--att_metrics_img_nb must be -1 or positive, got {image_nb}")
    return np.sort(np.random.default_rng(seed).choice(total, size=image_nb, replace=False))


def load_test_maps(args):
    """(attention maps, norms) saved by the model's test pass; a clear error if it did not run."""
    exp_folder = results_io.exp_dir(args)
    paths = results_io.latest_test_paths(exp_folder, args.model_id)
    checkpoint_file = results_io.checkpoint_path(exp_folder, args.model_id)
    if paths is None or not os.path.exists(checkpoint_file):
        raise FileNotFoundError(f"no trained model '{args.model_id}' in {exp_folder} (need {checkpoint_file} and "
                                f"its test artifacts). Run ./train.sh {args.model_id} first.")
    for path in (paths["att_maps"], paths["norm"]):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing. Run ./train.sh {args.model_id} again to remake it.")
    return np.load(paths["att_maps"]), np.load(paths["norm"])


def trained_args(args):
    """The options with the hyper-parameters the model was trained with (a search may have changed them)."""
    saved = load_config(results_io.config_path(results_io.exp_dir(args), args.model_id))
    return with_changes(args, **{name: getattr(saved, name) for name in HPARAM_NAMES})


def load_model_for_curves(args, device):
    model = build_model(with_changes(args, pretrained=False))
    load_checkpoint(model, results_io.checkpoint_path(results_io.exp_dir(args), args.model_id))
    return model.to(device).eval()


@torch.no_grad()
def run_attention_metrics(args):
    """Curves for --att_metrics_img_nb test images, saved as attMetr<Del|Add>_<model_id>*.npy."""
    att_maps, norms = load_test_maps(args)
    args = trained_args(args)
    _, test_samples = scan_folder(args.data_dir, args.dataset_test, args.class_nb)
    if len(test_samples) != len(att_maps):
        raise ValueError(f"the test set has {len(test_samples)} images but the saved maps cover {len(att_maps)}: "
                         f"the test folder changed since training; run ./train.sh {args.model_id} again")
    image_inds = choose_images(args.att_metrics_img_nb, len(test_samples), args.seed)
    device = get_device(args)
    model = load_model_for_curves(args, device)
    layout = memory_format(args, device)

    def forward(images):
        with autocast(device, args.amp_eval):
            return model(images.contiguous(memory_format=layout))["output"]

    targets = np.array([test_samples[i][1] for i in image_inds])
    kind = model_type(args)
    saliencies = [saliency_map(att_maps[i], norms[i], kind, args.att_metrics_saliency) for i in image_inds]
    step_cells = cells_per_step(*att_maps.shape[2:], args.att_metrics_few_steps)

    subset = [test_samples[i] for i in image_inds]
    transform = build_transform(args, False)
    preds = torch.cat([forward(images.to(device)).argmax(dim=1).cpu()
                       for images, _ in make_loader(subset, transform, args.att_metrics_batch_size, False, args)])
    one_by_one = make_loader(subset, transform, 1, False, args)
    image_source = (images[0].to(device) for images, _ in progress(one_by_one, desc=args.attention_metrics))
    curves = perturbation_curves(forward, image_source, saliencies, preds.tolist(), args.attention_metrics,
                                 step_cells, args.att_metrics_batch_size)

    paths = results_io.att_metrics_paths(results_io.exp_dir(args), args.model_id, args.attention_metrics)
    results_io.atomic_save_npy(paths["curves"], torch.stack(curves).numpy().astype(np.float64))
    results_io.atomic_save_npy(paths["img_inds"], image_inds)
    results_io.atomic_save_npy(paths["preds"], preds.numpy())
    results_io.atomic_save_npy(paths["targets"], targets)
    print(f"{args.attention_metrics} curves of {len(image_inds)} images ({len(curves[0])} steps) -> {paths['curves']}")
