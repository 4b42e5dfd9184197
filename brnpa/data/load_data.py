"""Image folders (ImageFolder layout), checks, transforms, train/val split, loaders.

These functions take explicit arguments (a Geometry for the image size and crop, an Augmentation for the
train transform), never the command-line options."""
import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms

from brnpa.core.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# The largest image decoded: 250 megapixels (15811 x 15811, about 0.7 GiB as 8-bit RGB). CUB's images are
# 500 x 375; anything far larger is more likely a damaged or hostile file than a photograph to classify.
MAX_IMAGE_PIXELS = 250_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EXPECTED_LAYOUT = ("expected one sub-folder per class holding its images, {folder}/<class>/<image>.jpg; "
                   "make CUB with python3 -m brnpa.data.prepare_cub --cub_dir /path/to/CUB_200_2011, "
                   "the synthetic demo data with python3 -m brnpa.data.synthetic (from the repository root)")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Image size and crop: resize to img_size / crop_ratio (a square with sq_resizing, else the shorter
    side), then crop img_size."""
    img_size: int
    crop_ratio: float
    sq_resizing: bool = True


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The train transform's random parts: flip and colour jitter (the crop is random too)."""
    hflip: bool
    brightness: float
    saturation: float


@dataclasses.dataclass(frozen=True)
class Folders:
    """The dataset folders of a run in data_dir, and how the validation split is made."""
    data_dir: str
    dataset_train: str
    dataset_val: str
    dataset_test: str
    class_nb: int
    train_prop: float
    seed: int
    released_split: bool = False


def scan_folder(data_dir, name, class_nb=None, checked_images_file=None):
    """List an ImageFolder tree: (class names sorted, [(path, label)] sorted by class then file).

    Raises DataError for a missing folder, no class folder, an empty class
    folder, a class count different from class_nb or a file that does not
    decode as an image (each image is decoded in full; with checked_images_file,
    images decoded before with the same size and mtime are not decoded again).
    """
    folder = os.path.join(data_dir, name)
    if not os.path.isdir(folder):
        raise DataError(f"dataset folder not found: {folder} ({EXPECTED_LAYOUT.format(folder=folder)})")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DataError(f"no class folder in {folder} ({EXPECTED_LAYOUT.format(folder=folder)})")
    if class_nb is not None and len(classes) != class_nb:
        raise DataError(f"{folder} has {len(classes)} class folders but --class_nb is {class_nb}")
    samples = []
    for label, class_name in enumerate(classes):
        class_folder = os.path.join(folder, class_name)
        files = sorted(f for f in os.listdir(class_folder) if f.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise DataError(f"class folder {class_folder} holds no image ({', '.join(IMG_EXTENSIONS)})")
        samples += [(os.path.join(class_folder, f), label) for f in files]
    check_images([path for path, _ in samples], checked_images_file)
    return classes, samples


def file_signature(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def check_images(paths, checked_images_file=None):
    """Decode every image in full (threads: Pillow decodes without the GIL); DataError naming the first
    that fails. Images listed in checked_images_file with their current size and mtime are skipped, and the
    file is updated with those that decoded."""
    checked = {}
    if checked_images_file is not None and os.path.exists(checked_images_file):
        try:
            with open(checked_images_file) as file:
                checked = json.load(file)
        except (OSError, ValueError):
            checked = {}  # a damaged cache only costs a new check
    todo = [path for path in paths if checked.get(path) != file_signature(path)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        errors = [error for error in pool.map(decode_error, todo) if error is not None]
    if errors:
        raise DataError(f"{errors[0]}" + (f" (and {len(errors) - 1} more bad images)" if len(errors) > 1 else ""))
    if checked_images_file is not None and todo:
        from brnpa.core.files import atomic_write_json
        checked = {path: signature for path, signature in checked.items() if os.path.exists(path)}
        checked.update({path: file_signature(path) for path in todo})
        os.makedirs(os.path.dirname(checked_images_file), exist_ok=True)
        atomic_write_json(checked_images_file, checked)


def decode_error(path):
    """None if the image decodes in full, else a message naming it."""
    try:
        load_rgb(path)
    except DataError as error:
        return str(error)
    return None


def load_rgb(path):
    """The image as 8-bit RGB. Grayscale, palette, CMYK and alpha images are converted; 16- and 32-bit
    grayscale are scaled to 8 bits (Pillow's own conversion would clip them to white). An image of more
    than MAX_IMAGE_PIXELS pixels is refused (DataError naming it), before it is decoded."""
    # Pillow's own guard warns from 89 megapixels and refuses from 179; ours replaces it, at one stated size
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(f"image {path} is {image.width}x{image.height}, more than the "
                                f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels this code decodes (about "
                                f"{3 * MAX_IMAGE_PIXELS / 2 ** 30:.1f} GiB as RGB): resize it first")
            image.load()
            if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                values = np.asarray(image, dtype=np.float64)
                if image.mode == "I" and values.max() > 65535:
                    values = values / 2 ** 32 * 65536  # a 32-bit image: to the 16-bit range first
                return Image.fromarray(np.round(values / 257).clip(0, 255).astype(np.uint8)).convert("RGB")
            return image.convert("RGB")
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {path}: {error}") from None


class ImageList(Dataset):
    """samples: [(path, label)]; item: (transformed image, label)."""

    def __init__(self, samples, transform):
        self.samples = samples
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


def resize_to_crop(geometry, interpolation=transforms.InterpolationMode.BILINEAR):
    """Resize to img_size / crop_ratio, truncated as the authors' code does (497 px for 448 px and crop 0.9): the
    square side with sq_resizing, else the shorter side."""
    side = int(geometry.img_size / geometry.crop_ratio)
    return transforms.Resize((side, side) if geometry.sq_resizing else side, interpolation=interpolation)


def build_transform(geometry, augmentation=None):
    """Train (with an Augmentation): resize, random crop, flip, colour jitter; test / validation (None):
    resize, centre crop. Both end with ImageNet normalisation."""
    resize = resize_to_crop(geometry)
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if augmentation is not None:
        flip = [transforms.RandomHorizontalFlip()] if augmentation.hflip else []
        return transforms.Compose([resize, transforms.RandomCrop(geometry.img_size), *flip,
                                   transforms.ColorJitter(brightness=augmentation.brightness,
                                                          saturation=augmentation.saturation)] + normalize)
    return transforms.Compose([resize, transforms.CenterCrop(geometry.img_size)] + normalize)


def split_samples(samples, train_prop, seed):
    """Fixed seeded split of a folder, stratified by class: (train samples, val samples)."""
    from sklearn.model_selection import train_test_split  # imported here: it is slow to import
    labels = [label for _, label in samples]
    try:
        train_inds, val_inds = train_test_split(list(range(len(samples))), train_size=train_prop,
                                                random_state=seed, stratify=labels)
    except ValueError as error:  # e.g. a class with one image cannot be split
        raise DataError(f"cannot split the train folder into train and validation with --train_prop "
                        f"{train_prop}: {error}") from None
    return [samples[i] for i in sorted(train_inds)], [samples[i] for i in sorted(val_inds)]


def released_split(samples, train_prop):
    """The split of the authors' released code: (train samples, val samples) of torch's random_split with the
    global generator seeded 1 (whatever the run's seed), not stratified; the first int(N * train_prop) images
    of the permutation train, the rest validate. Both lists are in folder order."""
    total = len(samples)
    permutation = torch.randperm(total, generator=torch.Generator().manual_seed(1)).tolist()
    cut = int(total * train_prop)
    return [samples[i] for i in sorted(permutation[:cut])], [samples[i] for i in sorted(permutation[cut:])]


def checked_images_file():
    """Where images known to decode are listed (path -> [size, mtime_ns]): a cache in the user's cache
    folder, not a result."""
    cache_root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_root, "br_npa", "checked_images.json")


def scan_test_folder(data_dir, dataset_test, class_nb):
    """[(path, label)] of the test folder, checked like load_samples does."""
    return scan_folder(data_dir, dataset_test, class_nb, checked_images_file())[1]


def load_samples(folders):
    """Scan and check every folder of a Folders: {'train', 'val', 'test'} -> [(path, label)].
    The three folders must hold the same class names. Nothing is written before this succeeds
    (but the cache of images found good, see checked_images_file)."""
    cache = checked_images_file()
    names = {"train": folders.dataset_train, "test": folders.dataset_test}
    if folders.dataset_val != folders.dataset_train:
        names["val"] = folders.dataset_val
    scanned = {split: scan_folder(folders.data_dir, name, folders.class_nb, cache) for split, name in names.items()}
    train_classes = scanned["train"][0]
    for split, (classes, _) in scanned.items():
        if classes != train_classes:
            only_train = sorted(set(train_classes) - set(classes))
            only_here = sorted(set(classes) - set(train_classes))
            raise DataError(f"the class folders of {os.path.join(folders.data_dir, names[split])} differ from "
                            f"those of {os.path.join(folders.data_dir, folders.dataset_train)} (only in train: "
                            f"{only_train[:5]}, only in {split}: {only_here[:5]}): labels would not match")
    samples = {split: found for split, (_, found) in scanned.items()}
    if folders.released_split:  # the train folder is cut to train_prop even when another folder validates
        samples["train"], own_val = released_split(samples["train"], folders.train_prop)
        samples.setdefault("val", own_val)
    elif "val" not in samples:
        samples["train"], samples["val"] = split_samples(samples["train"], folders.train_prop, folders.seed)
    return samples


def make_loader(samples, transform, batch_size, num_workers, pin_memory=False):
    """DataLoader over samples in their order (validation, test); pin_memory on CUDA."""
    return DataLoader(ImageList(samples, transform), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)


def make_train_loader(samples, transform, batch_size, seed, num_workers, pin_memory=False, rank=0, world_size=1):
    """Shuffling DataLoader whose order and augmentation depend only on (seed, epoch): call
    set_loader_epoch(loader, epoch) before each epoch. The permutation is the DistributedSampler's
    (one shard per process with world_size > 1); worker seeds come from the loader's generator,
    reseeded every epoch, so workers are not persistent. A resumed run therefore sees the same
    batches as an uninterrupted one."""
    dataset = ImageList(samples, transform)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator(), persistent_workers=False)


def set_loader_epoch(loader, epoch):
    """Fix the shuffle and the workers' augmentation seeds of a make_train_loader loader for one epoch."""
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(loader.sampler.seed * 100_003 + epoch)


def load_mask_array(path, geometry):
    """A part mask put through the test geometry (resize, centre crop, nearest): (size, size) bool."""
    if not os.path.exists(path):
        raise DataError(f"part mask not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"part mask {path} is not a file")
    to_test_geometry = transforms.Compose([resize_to_crop(geometry, transforms.InterpolationMode.NEAREST),
                                           transforms.CenterCrop(geometry.img_size)])
    with Image.open(path) as mask:
        return np.array(to_test_geometry(mask.convert("L"))) > 127
