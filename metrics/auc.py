"""Area under a deletion / insertion curve (docs/METHOD.md, "DAUC and IAUC"), and localisation scores."""
import numpy as np


def curve_x(cells_left, metric):
    """x axis of a curve: Add: 1 - left / max(left); Del: 1 - minmax(left). cells_left: (T,)."""
    cells_left = np.asarray(cells_left, dtype=np.float64)
    if metric == "Add":
        return 1 - cells_left / cells_left.max()
    if metric == "Del":
        low, high = cells_left.min(), cells_left.max()
        return 1 - (cells_left - low) / (high - low)
    raise ValueError(f"metric must be Del or Add, got '{metric}'")


def curve_auc(curve, metric):
    """Trapezoid area of score over x. curve: (T, 2) rows of (cells left, score)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(curve[:, 1], curve_x(curve[:, 0], metric)))


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
