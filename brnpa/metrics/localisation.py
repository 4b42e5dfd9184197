"""Localisation scores of a saliency map against a ground-truth part mask (the synthetic data's masks),
in one table: each takes (saliency (h, w) >= 0, mask (H, W) bool, H and W multiples of h and w) and
returns a float. Adding a score means writing its function and adding it to LOCALISATION_SCORES."""
import numpy as np


def energy_in_mask(saliency, mask):
    """Share of the saliency that falls inside the mask.

    saliency: (h, w) >= 0, mask: (H, W) bool with H, W multiples of h, w (each
    cell is a block of pixels). Returns a float in [0, 1].
    """
    saliency, mask = np.asarray(saliency, np.float64), np.asarray(mask, bool)
    pixel_saliency = upsample_cells(saliency, mask.shape)
    total = pixel_saliency.sum()
    return float((pixel_saliency * mask).sum() / total) if total > 0 else 0.0


def pointing_game(saliency, mask):
    """1.0 if the block of the saliency maximum touches the mask, else 0.0."""
    saliency, mask = np.asarray(saliency), np.asarray(mask, bool)
    height, width = saliency.shape
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    block_h, block_w = mask.shape[0] // height, mask.shape[1] // width
    return float(mask[row * block_h:(row + 1) * block_h, col * block_w:(col + 1) * block_w].any())


def upsample_cells(cells, shape):
    """Repeat each cell of an (h, w) array into its block of an (H, W) array."""
    height, width = cells.shape
    if shape[0] % height or shape[1] % width:
        raise ValueError(f"image size {shape} is not a multiple of the map size {cells.shape}")
    return np.repeat(np.repeat(cells, shape[0] // height, axis=0), shape[1] // width, axis=1)


# display name -> score function (higher is better for both)
LOCALISATION_SCORES = {"energy in part": energy_in_mask, "pointing game": pointing_game}


def localisation_scores(saliency, mask):
    """{display name: value} of every score of LOCALISATION_SCORES."""
    return {name: score(saliency, mask) for name, score in LOCALISATION_SCORES.items()}
