"""The statistics of the tables: intervals of a mean and the tests between sources."""
import numpy as np
from scipy import stats


def t_half_width(values, axis=0):
    """Half-width of the 95% t confidence interval of the mean along axis: t(0.975, n - 1) s / sqrt(n), with s the
    standard deviation (n - 1 in the denominator) of the n values."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    return stats.t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)


def mean_ci(values):
    """Mean and half-width of the 95% t confidence interval (nan for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    return float(values.mean()), float(t_half_width(values))


def welch_matrix(aucs):
    """p-values of Welch's t-test between every pair of models: (model ids, (M, M) array)."""
    model_ids = sorted(aucs)
    p_values = np.ones((len(model_ids), len(model_ids)))
    for i, first in enumerate(model_ids):
        for j, second in enumerate(model_ids):
            if i != j and len(aucs[first]) > 1 and len(aucs[second]) > 1:
                p_values[i, j] = stats.ttest_ind(aucs[first], aucs[second], equal_var=False).pvalue
    return model_ids, p_values
