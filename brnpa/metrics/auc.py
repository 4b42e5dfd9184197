"""The x axes of the curves and the area under a curve (docs/METHOD.md, "DAUC and IAUC", "ROAD")."""
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


def tenths_x(cells_left):
    """x axis of a curve of the 'tenths' step rule (ROAD): the share of the cells each step means to perturb,
    0.1, 0.2, ..., 0.9 (a step perturbs that share rounded up to whole cells). cells_left: (9,)."""
    return (np.arange(len(cells_left)) + 1) / 10


def curve_auc(curve, x_axis):
    """Trapezoid area of score over x. curve: (T, 2) rows of (cells left, score); x_axis: cells left -> x
    (deletion_x, insertion_x or tenths_x)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(curve[:, 1], x_axis(curve[:, 0])))
