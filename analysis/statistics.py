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


def welch_matrix(aucs):
    """p-values of Welch's t-test between every pair of models: (model ids, (M, M) array); 1 on the diagonal
    and where a model has fewer than 2 values (analysis.comparisons.welch_p_values)."""
    from analysis.comparisons import welch_p_values
    model_ids = sorted(aucs)
    position = {model_id: k for k, model_id in enumerate(model_ids)}
    pairs = [(first, second) for first in model_ids for second in model_ids
             if first != second and len(aucs[first]) > 1 and len(aucs[second]) > 1]
    values = {model_id: dict(enumerate(np.asarray(aucs[model_id], dtype=np.float64))) for model_id in model_ids}
    p_values = np.ones((len(model_ids), len(model_ids)))
    for (first, second), p in zip(pairs, welch_p_values(values, pairs)):
        p_values[position[first], position[second]] = p
    return model_ids, p_values
