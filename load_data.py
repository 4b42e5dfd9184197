"""Image folders (ImageFolder layout), checks, transforms, train/val split, loaders."""
import os

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EXPECTED_LAYOUT = """expected layout (one folder per class, as torchvision's ImageFolder):
    {data_dir}/{name}/<class_1>/<image>.jpg
    {data_dir}/{name}/<class_2>/<image>.jpg
    ...
For CUB-200-2011 run: python data/prepare_cub.py --cub_dir /path/to/CUB_200_2011
For the synthetic demo data run: python data/synthetic.py   (or ./demo.sh)"""


class DataError(ValueError):
    """A dataset folder that does not have the expected layout or content."""


def scan_folder(data_dir, name, class_nb=None):
    """List an ImageFolder tree: (class names sorted, [(path, label)] sorted by class then file).

    Raises DataError for a missing folder, no class folder, an empty class
    folder, a class count different from class_nb or a file that is not a
    readable image.
    """
    folder = os.path.join(data_dir, name)
    if not os.path.isdir(folder):
        raise DataError(f"dataset folder not found: {folder}\n" + EXPECTED_LAYOUT.format(data_dir=data_dir, name=name))
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DataError(f"no class folder in {folder}\n" + EXPECTED_LAYOUT.format(data_dir=data_dir, name=name))
    if class_nb is not None and len(classes) != class_nb:
        raise DataError(f"{folder} has {len(classes)} class folders but --class_nb is {class_nb}")
    samples = []
    for label, class_name in enumerate(classes):
        class_folder = os.path.join(folder, class_name)
        files = sorted(f for f in os.listdir(class_folder) if f.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise DataError(f"class folder {class_folder} holds no image ({', '.join(IMG_EXTENSIONS)})")
        samples += [(os.path.join(class_folder, f), label) for f in files]
    for path, _ in samples:
        check_image(path)
    return classes, samples


def check_image(path):
    """Read the image header; DataError naming the file if it is not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError) as error:
        raise DataError(f"unreadable image {path}: {error}") from None


def load_rgb(path):
    """The image as RGB (grayscale, palette, CMYK and alpha images converted)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError) as error:
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


def resize_to_crop(args, crop_ratio, interpolation=transforms.InterpolationMode.BILINEAR):
    """Resize to img_size / crop_ratio: the square side with --sq_resizing, else the shorter side."""
    side = int(round(args.img_size / crop_ratio))
    return transforms.Resize((side, side) if args.sq_resizing else side, interpolation=interpolation)


def build_transform(args, train, crop_ratio=None, brightness=None, saturation=None):
    """Train: resize to size/crop_ratio, random crop, flip, colour jitter; test: resize, centre crop.
    crop_ratio / brightness / saturation default to the options (a trial passes its own)."""
    crop_ratio = args.crop_ratio if crop_ratio is None else crop_ratio
    brightness = args.brightness if brightness is None else brightness
    saturation = args.saturation if saturation is None else saturation
    size = args.img_size
    resize = resize_to_crop(args, crop_ratio)
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return transforms.Compose([resize, transforms.RandomCrop(size), transforms.RandomHorizontalFlip(),
                                   transforms.ColorJitter(brightness=brightness, saturation=saturation)]
                                  + normalize)
    return transforms.Compose([resize, transforms.CenterCrop(size)] + normalize)


def split_samples(samples, train_prop, seed):
    """Fixed seeded split of a folder, stratified by class: (train samples, val samples)."""
    labels = [label for _, label in samples]
    try:
        train_inds, val_inds = train_test_split(list(range(len(samples))), train_size=train_prop,
                                                random_state=seed, stratify=labels)
    except ValueError as error:  # e.g. a class with one image cannot be split
        raise DataError(f"cannot split the train folder into train and validation with --train_prop "
                        f"{train_prop}: {error}") from None
    return [samples[i] for i in sorted(train_inds)], [samples[i] for i in sorted(val_inds)]


def load_samples(args):
    """Scan and check every folder the run needs: {'train', 'val', 'test'} -> [(path, label)].
    Nothing is written before this succeeds."""
    _, train = scan_folder(args.data_dir, args.dataset_train, args.class_nb)
    if args.dataset_val == args.dataset_train:
        train, val = split_samples(train, args.train_prop, args.seed)
    else:
        _, val = scan_folder(args.data_dir, args.dataset_val, args.class_nb)
    _, test = scan_folder(args.data_dir, args.dataset_test, args.class_nb)
    return {"train": train, "val": val, "test": test}


def make_loader(samples, transform, batch_size, shuffle, args, seed=0):
    """DataLoader over samples; pinned memory and persistent workers on CUDA."""
    use_cuda = args.cuda and torch.cuda.is_available()
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ImageList(samples, transform), batch_size=batch_size, shuffle=shuffle,
                      num_workers=args.num_workers, pin_memory=use_cuda, drop_last=False,
                      persistent_workers=args.num_workers > 0, generator=generator)


def load_mask_array(path, args):
    """A part mask put through the test geometry (resize, centre crop, nearest): (size, size) bool."""
    if not os.path.exists(path):
        raise DataError(f"part mask not found: {path}")
    geometry = transforms.Compose([resize_to_crop(args, args.crop_ratio, transforms.InterpolationMode.NEAREST),
                                   transforms.CenterCrop(args.img_size)])
    with Image.open(path) as mask:
        return np.array(geometry(mask.convert("L"))) > 127
