"""Area under a deletion / insertion curve (docs/METHOD.md, "DAUC and IAUC")."""
import numpy as np


def insertion_x(cells_left):
    """x axis of an insertion curve: 1 - left / max(left). cells_left: (T,)."""
    cells_left = np.asarray(cells_left, dtype=np.float64)
    return 1 - cells_left / cells_left.max()


def deletion_x(cells_left):
    """x axis of a deletion curve: 1 - minmax(left). cells_left: (T,)."""
    cells_left = np.asarray(cells_left, dtype=np.float64)
    low, high = cells_left.min(), cells_left.max()
    return 1 - (cells_left - low) / (high - low)


def curve_auc(curve, x_axis):
    """Trapezoid area of score over x. curve: (T, 2) rows of (cells left, score); x_axis: cells left -> x
    (deletion_x or insertion_x)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(curve[:, 1], x_axis(curve[:, 0])))
