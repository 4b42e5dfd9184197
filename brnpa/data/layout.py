"""Where a dataset's part masks are, beside its images (torch-free: the synthetic data's generator uses it)."""
import os


def mask_folder(image_folder):
    """The folder of an image folder's part masks, beside it: <image folder>_masks (the synthetic data has one
    per split). It holds one mask per image, at the image's path relative to the image folder."""
    return image_folder + "_masks"


def part_mask_path(image_folder, image_path):
    """The part mask of an image of image_folder, or None where the folder has no masks."""
    masks = mask_folder(image_folder)
    return os.path.join(masks, os.path.relpath(image_path, image_folder)) if os.path.isdir(masks) else None
