"""Figure: test images with each model's saliency overlaid (and the part mask when there is one).

    python3 plot_maps.py --exp_id demo --model_ids cnn b_cnn br_npa_low_res --out pics/demo_attention.png
"""
import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from brnpa.runs import results_io
from brnpa.runs import lifecycle
from brnpa.core.errors import run_main
from brnpa.data import layout
from brnpa.data.load_data import (IMAGENET_MEAN, IMAGENET_STD, build_transform, load_mask_array, load_rgb,
                                  scan_test_folder)
from brnpa.metrics.perturbation import saliencies_from_maps
from brnpa.models.heads import head_class
from brnpa.core.options import REPO_ROOT, HelpFormatter, resolve_path, str2bool
from brnpa.runs.runtime import data_config


def main(argv=None):
    opts = build_parser().parse_args(argv)
    run_main(lambda: draw(opts), opts.debug)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--exp_id", default="CUB", help="the experiment whose models are drawn")
    parser.add_argument("--model_ids", nargs="+", required=True, help="trained models, one row each")
    parser.add_argument("--results_dir", default=os.path.join(REPO_ROOT, "results"), help="results root")
    parser.add_argument("--img_nb", type=int, default=6, help="test images shown (evenly spaced in the test set)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "pics", "attention.png"),
                        help="PNG written (relative paths from the repo root)")
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser


def draw(opts):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp_folder = results_io.exp_dir(resolve_path(opts.results_dir), opts.exp_id)
    landed = {model_id: lifecycle.LandedRun(exp_folder, model_id) for model_id in opts.model_ids}
    first_args = landed[opts.model_ids[0]].args
    samples = scan_test_folder(first_args.data_dir, first_args.dataset_test, first_args.class_nb)
    shown = np.linspace(0, len(samples) - 1, opts.img_nb).round().astype(int)
    geometry = data_config(first_args)[1]
    transform = build_transform(geometry)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    images = [(transform(load_rgb(samples[i][0])) * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() for i in shown]
    test_folder = os.path.join(first_args.data_dir, first_args.dataset_test)
    has_masks = os.path.isdir(layout.mask_folder(test_folder))

    rows = len(opts.model_ids) + 1
    fig, axes = plt.subplots(rows, len(shown), figsize=(1.6 * len(shown), 1.6 * rows), squeeze=False)
    for col, (index, image) in enumerate(zip(shown, images)):
        axes[0, col].imshow(image)
        if has_masks:
            mask = load_mask_array(layout.part_mask_path(test_folder, samples[index][0]), geometry)
            axes[0, col].contour(mask, levels=[0.5], colors="lime", linewidths=1)
    axes[0, 0].set_ylabel("image" + (" + part" if has_masks else ""), fontsize=8)
    for row, model_id in enumerate(opts.model_ids, start=1):
        model_args, paths = landed[model_id].args, landed[model_id].paths
        att_maps = results_io.read_array(paths["att_maps"], landed[model_id].remake)
        norms = results_io.read_array(paths["norm"], landed[model_id].remake)
        for col, (index, image) in enumerate(zip(shown, images)):
            saliency = saliencies_from_maps(att_maps, norms, head_class(model_args.head), [index])[0]
            saliency = F.interpolate(saliency[None, None], size=image.shape[:2], mode="bilinear",
                                     align_corners=False)[0, 0].numpy()
            axes[row, col].imshow(image)
            axes[row, col].imshow(saliency, cmap="jet", alpha=0.5)
        axes[row, 0].set_ylabel(model_id, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = resolve_path(opts.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"figure -> {out}")


if __name__ == "__main__":
    main()
