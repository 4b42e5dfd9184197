"""Turn the official CUB_200_2011 archive into the two folders the README wants.

    python3 -m brnpa.data.prepare_cub --cub_dir /path/to/CUB_200_2011

reads images.txt, image_class_labels.txt, train_test_split.txt and images/,
and writes data/CUB-200-2011_train/<class>/<img> (5994 images) and
data/CUB-200-2011_test/<class>/<img> (5794 images), 200 classes each. Files
are copied (or symlinked with --symlink) into temporary folders renamed at
the end, so an interrupted run leaves nothing half-written.
"""
import os
import shutil
import sys

if not __package__:  # started as a file: the project's modules are importable only as a package
    sys.exit("error: run it from the repository root as python3 -m brnpa.data.prepare_cub (or anywhere after "
             "pip install .)")

from brnpa.core.errors import DataError, run_main  # noqa: E402
from brnpa.core.options import REPO_ROOT, HelpFormatter, OneLineParser, str2bool  # noqa: E402

CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt")


def read_id_file(path):
    """{image id: second column} of a CUB '<id> <value>' file."""
    values = {}
    with open(path) as file:
        for line_nb, line in enumerate(file, start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"{path}, line {line_nb}: expected '<image id> <value>', got '{line.strip()}'")
            values[int(parts[0])] = parts[1].strip()
    return values


def cub_split(cub_dir):
    """{'train': [relative image path], 'test': [...]} from the archive's text files."""
    for name in CUB_FILES + ("images",):
        if not os.path.exists(os.path.join(cub_dir, name)):
            raise DataError(f"{os.path.join(cub_dir, name)} not found: --cub_dir must be the CUB_200_2011 "
                                    f"folder of the official archive (holding {', '.join(CUB_FILES)}, images/)")
    paths = read_id_file(os.path.join(cub_dir, "images.txt"))
    labels = read_id_file(os.path.join(cub_dir, "image_class_labels.txt"))
    is_train = read_id_file(os.path.join(cub_dir, "train_test_split.txt"))
    if not paths.keys() == labels.keys() == is_train.keys():
        raise DataError(f"the image ids of {', '.join(CUB_FILES)} in {cub_dir} differ")
    split = {"train": [], "test": []}
    for image_id in sorted(paths):
        split["train" if is_train[image_id] == "1" else "test"].append(paths[image_id])
    return split


def prepare_cub(cub_dir, data_dir, symlink=False, overwrite=False):
    """Write <data_dir>/CUB-200-2011_train and _test; returns {split: image count}."""
    split = cub_split(cub_dir)
    counts = {}
    for name, rel_paths in split.items():
        folder = os.path.join(data_dir, f"CUB-200-2011_{name}")
        if os.path.exists(folder):
            if not overwrite:
                raise DataError(f"{folder} exists; pass --overwrite True to make it again")
            shutil.rmtree(folder)
        tmp_folder = folder + ".tmp"
        shutil.rmtree(tmp_folder, ignore_errors=True)
        for rel_path in rel_paths:
            source = os.path.join(cub_dir, "images", rel_path)
            if not os.path.isfile(source):
                shutil.rmtree(tmp_folder, ignore_errors=True)
                raise DataError(f"{source} is listed in images.txt but missing")
            target = os.path.join(tmp_folder, rel_path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if symlink:
                os.symlink(os.path.abspath(source), target)
            else:
                shutil.copyfile(source, target)
        os.replace(tmp_folder, folder)
        counts[name] = len(rel_paths)
    return counts


def main(argv=None):
    opts = build_parser().parse_args(argv)
    run_main(lambda: run(opts), opts.debug)


def build_parser():
    parser = OneLineParser(prog="-m brnpa.data.prepare_cub", description=__doc__,
                           formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--cub_dir", required=True, help="the CUB_200_2011 folder of the official archive")
    parser.add_argument("--data_dir", default=os.path.join(REPO_ROOT, "data"), help="where the folders go")
    parser.add_argument("--symlink", type=str2bool, nargs="?", const=True, default=False,
                        help="True: link the images instead of copying them")
    # True / False like every other option; a bare --overwrite, as older versions took it, means True
    parser.add_argument("--overwrite", type=str2bool, nargs="?", const=True, default=False,
                        help="True: replace existing folders")
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser


def run(opts):
    counts = prepare_cub(opts.cub_dir, opts.data_dir, opts.symlink, opts.overwrite)
    print(f"wrote {counts['train']} train and {counts['test']} test images to {opts.data_dir}")


if __name__ == "__main__":
    main()
