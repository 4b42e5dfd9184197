"""The statistics of the tables: intervals of a mean and the tests between sources."""
import numpy as np
from scipy import stats


def t_half_width(values, axis=0):
    """Half-width of the 95% t confidence interval of the mean along axis: t(0.975, n - 1) s / sqrt(n), with s the
    standard deviation (n - 1 in the denominator) of the n values."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    return stats.t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)


def defined(values):
    """The finite values of an array (N,) as float64: a score's nan marks an image it is not defined on, or one
    left out (analysis.sets.non_finite_images)."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def defined_mean(values):
    """The mean of the finite values (nan without any)."""
    values = defined(values)
    return float(values.mean()) if len(values) else float("nan")


def defined_median(values):
    """The median of the finite values (nan without any)."""
    values = defined(values)
    return float(np.median(values)) if len(values) else float("nan")


def mean_ci(values):
    """Mean and half-width of the 95% t confidence interval (nan for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    return float(values.mean()), float(t_half_width(values))
