"""A small synthetic fine-grained dataset with known discriminative parts.

Every image shows the same kind of scene: a textured background, one large
ellipse (the shared "object") and a few solid-colour distractors, all drawn
from distributions common to every class. Classes differ only by a small
square part (``part_area`` of the image, 7% by default) at a random position,
whose pattern (horizontal stripes, vertical stripes or checkerboard) and
colour pair encode the class. The part's ground-truth mask is written for
every image, so one can check where attention lands.

Layout written (ImageFolder, as the seed README wants for CUB):
    <data_dir>/<name>_train/class_XX/img_XXXX.png
    <data_dir>/<name>_test/...
    <data_dir>/<name>_train_masks/class_XX/img_XXXX.png  (255 on the part, 0 elsewhere)
    <data_dir>/<name>_test_masks/...

    python3 -m brnpa.data.synthetic --name synth --class_nb 6
"""
import os
import shutil
import sys

import numpy as np
from PIL import Image

if not __package__:  # started as a file: the project's modules are importable only as a package
    sys.exit("error: run it from the repository root as python3 -m brnpa.data.synthetic (or anywhere after "
             "pip install .)")

from brnpa.data.layout import mask_folder as masks_of  # noqa: E402
from brnpa.core.errors import DataError, run_main  # noqa: E402
from brnpa.core.options import REPO_ROOT, HelpFormatter, OneLineParser, str2bool  # noqa: E402

PATTERNS = ("hstripes", "vstripes", "checker")
COLOR_PAIRS = (((230, 40, 40), (250, 220, 40)),
               ((40, 90, 230), (240, 240, 240)),
               ((30, 180, 60), (120, 20, 140)),
               ((250, 130, 0), (20, 20, 20)))
MAX_CLASSES = len(PATTERNS) * len(COLOR_PAIRS)


def part_pattern(class_index, side, stripe=3):
    """(side, side, 3) uint8 pattern of a class: pattern = class % 3, colours = class // 3."""
    pattern = PATTERNS[class_index % len(PATTERNS)]
    color_a, color_b = COLOR_PAIRS[class_index // len(PATTERNS)]
    rows, cols = np.mgrid[0:side, 0:side] // stripe
    if pattern == "hstripes":
        first = rows % 2 == 0
    elif pattern == "vstripes":
        first = cols % 2 == 0
    else:
        first = (rows + cols) % 2 == 0
    return np.where(first[..., None], np.array(color_a, np.uint8), np.array(color_b, np.uint8))


def draw_image(rng, class_index, img_size, part_area, distractor_nb=3):
    """One image (img_size, img_size, 3) uint8 and its part mask (img_size, img_size) bool."""
    yy, xx = np.mgrid[0:img_size, 0:img_size] / img_size
    base = rng.uniform(60, 190, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    image = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    image = image + rng.normal(0, 12, size=image.shape)

    center = rng.uniform(0.3, 0.7, size=2)
    radii = rng.uniform(0.2, 0.35, size=2)
    body = ((yy - center[0]) / radii[0]) ** 2 + ((xx - center[1]) / radii[1]) ** 2 < 1
    image[body] = rng.uniform(80, 200, size=3) + rng.normal(0, 8, size=(body.sum(), 3))

    for _ in range(distractor_nb):
        color = rng.uniform(0, 255, size=3)
        cy, cx = rng.uniform(0, 1, size=2)
        size = rng.uniform(0.05, 0.12)
        if rng.uniform() < 0.5:
            shape = (yy - cy) ** 2 + (xx - cx) ** 2 < size ** 2
        else:
            shape = (np.abs(yy - cy) < size) & (np.abs(xx - cx) < size)
        image[shape] = color

    side = max(4, int(round(img_size * np.sqrt(part_area))))
    top, left = rng.integers(0, img_size - side + 1, size=2)
    image[top:top + side, left:left + side] = part_pattern(class_index, side)
    mask = np.zeros((img_size, img_size), bool)
    mask[top:top + side, left:left + side] = True
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_split(folder, mask_folder, rng, class_nb, per_class, img_size, part_area):
    for class_index in range(class_nb):
        class_name = f"class_{class_index:02d}"
        os.makedirs(os.path.join(folder, class_name))
        os.makedirs(os.path.join(mask_folder, class_name))
        for img_index in range(per_class):
            image, mask = draw_image(rng, class_index, img_size, part_area)
            file_name = f"img_{img_index:04d}.png"
            Image.fromarray(image).save(os.path.join(folder, class_name, file_name))
            Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(mask_folder, class_name, file_name))


def make_synthetic(data_dir, name="synth", class_nb=6, train_per_class=200, test_per_class=20, img_size=64,
                   part_area=0.07, seed=0, overwrite=False):
    """Write the four folders of the dataset `name` in data_dir; returns their paths.

    Deterministic from `seed`. Folders are written under a temporary name and
    renamed at the end, so an interrupted run leaves nothing half-written.
    """
    if not 1 <= class_nb <= MAX_CLASSES:
        raise DataError(f"class_nb must be between 1 and {MAX_CLASSES}, got {class_nb}")
    splits = {"train": train_per_class, "test": test_per_class}
    folders = {}
    for split_index, (split, per_class) in enumerate(splits.items()):
        folder = os.path.join(data_dir, f"{name}_{split}")
        mask_folder = masks_of(folder)
        folders[split], folders[split + "_masks"] = folder, mask_folder
        if os.path.exists(folder) or os.path.exists(mask_folder):
            if not overwrite:
                raise DataError(f"{folder} exists; pass --overwrite True to make it again")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(mask_folder, ignore_errors=True)
        tmp_folder, tmp_mask_folder = folder + ".tmp", mask_folder + ".tmp"
        shutil.rmtree(tmp_folder, ignore_errors=True)
        shutil.rmtree(tmp_mask_folder, ignore_errors=True)
        rng = np.random.default_rng([seed, split_index])
        write_split(tmp_folder, tmp_mask_folder, rng, class_nb, per_class, img_size, part_area)
        os.replace(tmp_mask_folder, mask_folder)
        os.replace(tmp_folder, folder)
    return folders


def main(argv=None):
    opts = build_parser().parse_args(argv)
    run_main(lambda: run(opts), opts.debug)


def build_parser():
    parser = OneLineParser(prog="-m brnpa.data.synthetic", description=__doc__,
                           formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--data_dir", default=os.path.join(REPO_ROOT, "data"), help="where the folders go")
    parser.add_argument("--name", default="synth", help="dataset name (folders <name>_train, <name>_test, ...)")
    parser.add_argument("--class_nb", type=int, default=6, help=f"number of classes (at most {MAX_CLASSES})")
    parser.add_argument("--train_per_class", type=int, default=200, help="train images per class")
    parser.add_argument("--test_per_class", type=int, default=20, help="test images per class")
    parser.add_argument("--img_size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--part_area", type=float, default=0.07, help="area of the part / image area")
    parser.add_argument("--seed", type=int, default=0, help="the dataset is a function of this seed")
    # True / False like every other option; a bare --overwrite, as older versions took it, means True
    parser.add_argument("--overwrite", type=str2bool, nargs="?", const=True, default=False,
                        help="True: replace existing folders")
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser


def run(opts):
    folders = make_synthetic(opts.data_dir, opts.name, opts.class_nb, opts.train_per_class, opts.test_per_class,
                             opts.img_size, opts.part_area, opts.seed, opts.overwrite)
    for folder in folders.values():
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
