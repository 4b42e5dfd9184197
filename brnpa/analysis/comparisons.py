"""Paired comparisons between the sources of one experiment, and how far a score can be trusted there
(docs/METHOD.md, "Comparing sources" and "Can a score be trusted here?").

Every source of an experiment is scored on the same test images, so two sources are compared on the images
both scored, image by image: the Wilcoxon signed-rank test, the median paired difference with a bootstrap
interval, and the matched-pairs rank-biserial correlation as the effect size; Holm's correction runs over
all pairs of one score. Over all sources at once: the mean rank of each source over the images (rank 1 the
best), Friedman's test, and Krippendorff's alpha of the images' rankings. Across scores: Spearman's
correlation over the (image, source) pairs both scores have.

Values are {source: {test index: value}}; a score's direction is lower_is_better. Everything here is a pure
function of these values; brnpa/analysis/summary.py writes and prints the results.
"""
import dataclasses
import itertools
import math
import warnings

import numpy as np
from scipy import stats

from brnpa.analysis.statistics import t_half_width

ALPHA = 0.05
# Krippendorff's thresholds for alpha (Content Analysis, 2004, section 11.4.4): at least 0.8 to rely on the
# data, at least 0.667 for tentative conclusions only.
RELIABLE, TENTATIVE = 0.8, 0.667


@dataclasses.dataclass
class PairedComparison:
    """first vs second on one score. n: images both scored; only_first, only_second: images only one of them
    scored; median_difference, low, high: the median of (first - second) over the n images and its 95%
    bootstrap interval; effect: the matched-pairs rank-biserial correlation (positive: first tends to be
    higher); p: Wilcoxon's two-sided p; p_holm: p after Holm's correction over the score's pairs; welch_p:
    Welch's t-test on all the values of each (unpaired, the released protocol); better: the source that is
    better in the score's direction where p_holm < ALPHA, '' otherwise."""
    first: str
    second: str
    n: int
    only_first: int
    only_second: int
    median_difference: float
    low: float
    high: float
    effect: float
    p: float
    welch_p: float = math.nan
    p_holm: float = math.nan
    better: str = ""


def paired_values(first, second):
    """(a (n,), b (n,), only_first, only_second): the values of the images both {test index: value} dicts
    hold, in test-index order, and the counts of the images only one of them holds."""
    common = sorted(set(first) & set(second))
    return (np.array([first[i] for i in common], dtype=np.float64),
            np.array([second[i] for i in common], dtype=np.float64),
            len(set(first) - set(second)), len(set(second) - set(first)))


def rank_biserial(differences):
    """Matched-pairs rank-biserial correlation of paired differences (n,) (Kerby 2014): (R+ - R-) / (R+ + R-),
    R+ and R- the sums of the ranks of |d| (ties averaged, zero differences dropped, as Wilcoxon's test drops
    them) over the positive and the negative differences. In [-1, 1]; 0 without a non-zero difference."""
    differences = np.asarray(differences, dtype=np.float64)
    differences = differences[differences != 0]
    if len(differences) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(differences))
    plus, minus = ranks[differences > 0].sum(), ranks[differences < 0].sum()
    return float((plus - minus) / (plus + minus))


def wilcoxon_p(a, b):
    """Two-sided p of the Wilcoxon signed-rank test of paired values a, b (n,); 1.0 when every difference is
    zero, nan for fewer than 2 pairs."""
    if len(a) < 2:
        return math.nan
    if np.all(a == b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


def resample_counts(n, resamples, seed):
    """(resamples, n) int: how often each of n items is drawn by each bootstrap resample of n draws with
    replacement, from np.random.default_rng(seed) (the draws of scipy.stats.bootstrap with that generator)."""
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    counts = np.zeros((resamples, n), dtype=np.int32)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    return counts


def bootstrap_medians(differences, resamples, seed):
    """Medians (P, resamples) of the bootstrap resamples of each row of differences (P pairs, n images): the
    same draws of n images with replacement for every row, the draws of scipy.stats.bootstrap (paired, seeded
    with np.random.default_rng(seed)), so the medians are scipy's. Each resample is counted rather than
    gathered: counts[r, i] is how often resample r drew image i; in a row's sorted order, the k-th smallest
    value of resample r sits where the running count of r first reaches k. The tests compare with scipy."""
    pairs, n = differences.shape
    counts = resample_counts(n, resamples, seed)
    order = np.argsort(differences, axis=1, kind="stable")  # (P, n)
    ordered = np.take_along_axis(differences, order, axis=1)
    medians = np.empty((pairs, resamples))
    chunk = max(1, 20_000_000 // (resamples * n))  # rows at a time: (resamples, chunk, n) running counts
    for start in range(0, pairs, chunk):
        rows = np.arange(start, min(start + chunk, pairs))
        running = np.cumsum(counts[:, order[rows]], axis=-1, dtype=np.int32)  # (resamples, rows, n)
        low_middle = ordered[rows, (running < (n + 1) // 2).sum(axis=-1)]  # the ((n + 1) // 2)-th smallest
        high_middle = ordered[rows, (running < n // 2 + 1).sum(axis=-1)]  # the (n // 2 + 1)-th smallest
        medians[rows] = ((low_middle + high_middle) / 2).T
    return medians


def median_difference_intervals(differences, resamples, seed):
    """(medians, lows, highs), each (P,): the median of each row of differences (P pairs, n images, paired
    differences first - second) and its 95% percentile bootstrap interval (bootstrap_medians); nan for n = 0."""
    if differences.shape[1] == 0:
        return (np.full(len(differences), np.nan),) * 3
    low, high = np.percentile(bootstrap_medians(differences, resamples, seed), [2.5, 97.5], axis=1)
    return np.median(differences, axis=1), low, high


def holm(p_values):
    """Holm's step-down adjustment of p-values (m,): the k-th smallest p becomes max over j <= k of
    min(1, (m - j + 1) p_(j)); nan stays nan and does not count in m. Written here rather than called from
    statsmodels' multipletests, which runs a full garbage collection on every Holm call (statsmodels 0.15):
    0.2 s a call once matplotlib's figures are alive, 4 s over the paper table; the tests compare the two."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(p_values), np.nan)
    present = np.flatnonzero(~np.isnan(p_values))
    order = present[np.argsort(p_values[present], kind="stable")]
    factors = len(order) - np.arange(len(order))  # m, m - 1, ..., 1
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p_values[order]))
    return adjusted


def welch_p_values(values, pairs_of_sources):
    """Welch's two-sided t-test p (unpaired, the released protocol) of every (first, second) of
    pairs_of_sources on all the values of each (values: {source: {test index: value}}), from each source's
    mean, standard deviation and count computed once (scipy's ttest_ind_from_stats, one call for all pairs);
    nan where a source has fewer than 2 values or both are constant."""
    if not pairs_of_sources:
        return np.zeros(0)
    summary = {source: (np.mean(list(v.values())), np.std(list(v.values()), ddof=1) if len(v) > 1 else math.nan,
                        len(v)) for source, v in values.items()}
    first = np.array([summary[f] for f, _ in pairs_of_sources]).T
    second = np.array([summary[s] for _, s in pairs_of_sources]).T
    with warnings.catch_warnings():  # identical constant samples (a floor's ρ of 1): p is nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_ind_from_stats(*first, *second, equal_var=False).pvalue


def compare_pair(first, second, values, interval):
    """The PairedComparison of sources first and second (values: {source: {test index: value}}) with interval,
    the (median, low, high) of their paired differences, without its Welch p and Holm-adjusted p
    (compare_sources computes those three over all pairs at once)."""
    a, b, only_first, only_second = paired_values(values[first], values[second])
    return PairedComparison(first, second, len(a), only_first, only_second, *map(float, interval),
                            rank_biserial(a - b), wilcoxon_p(a, b))


def pair_intervals(values, pairs_of_sources, resamples, seed):
    """{(first, second): (median, low, high)} of the paired differences of every pair of pairs_of_sources, the
    pairs that share the same images bootstrapped together (median_difference_intervals)."""
    by_images = {}
    for first, second in pairs_of_sources:
        common = tuple(sorted(set(values[first]) & set(values[second])))
        by_images.setdefault(common, []).append((first, second))
    intervals = {}
    for common, group in by_images.items():
        differences = np.array([[values[first][i] - values[second][i] for i in common] for first, second in group],
                               dtype=np.float64).reshape(len(group), len(common))
        intervals.update(zip(group, zip(*median_difference_intervals(differences, resamples, seed))))
    return intervals


# The tests of --test and their names in the notes and plots.
TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank", "welch": "Welch t-test"}
TESTS = tuple(TEST_NAMES)


def compare_sources(values, lower_is_better, test="wilcoxon", resamples=1000, seed=0):
    """[PairedComparison] of every pair of sources (in sorted order) on one score, with Holm's correction
    over these pairs of the test's p (test: 'wilcoxon', the paired test, or 'welch', the released protocol's
    unpaired one) and the better source of each significant pair."""
    if test not in TESTS:
        raise ValueError(f"the test must be one of {', '.join(TESTS)}, got '{test}'")
    sources = sorted(values)
    pairs_of_sources = list(itertools.combinations(sources, 2))
    intervals = pair_intervals(values, pairs_of_sources, resamples, seed)
    pairs = [compare_pair(first, second, values, intervals[first, second]) for first, second in pairs_of_sources]
    for pair, welch in zip(pairs, welch_p_values(values, pairs_of_sources)):
        pair.welch_p = float(welch)
    for pair, adjusted in zip(pairs, holm([pair.p if test == "wilcoxon" else pair.welch_p for pair in pairs])):
        pair.p_holm = float(adjusted)
        # which way: the paired effect for Wilcoxon, the difference of the means for Welch
        direction = pair.effect if test == "wilcoxon" else (np.mean(list(values[pair.first].values()))
                                                            - np.mean(list(values[pair.second].values())))
        if adjusted < ALPHA and direction != 0:
            pair.better = pair.first if (direction > 0) != lower_is_better else pair.second
    return pairs


def not_better_than(pairs, floor):
    """The sources of pairs that are not significantly better than the source `floor` (no pair with it counts
    as not better)."""
    sources = {pair.first for pair in pairs} | {pair.second for pair in pairs}
    better = {pair.first if pair.second == floor else pair.second for pair in pairs
              if floor in (pair.first, pair.second) and pair.better not in ("", floor)}
    return sources - better - {floor}


def significantly_best(pairs):
    """The source that the Holm-adjusted paired test finds better than every other source, or None."""
    sources = {pair.first for pair in pairs} | {pair.second for pair in pairs}
    for source in sources:
        own = [pair for pair in pairs if source in (pair.first, pair.second)]
        if own and all(pair.better == source for pair in own):
            return source
    return None


def common_matrix(values):
    """(sources, test indices, values (N images, S sources)) on the images every source scored."""
    sources = sorted(values)
    common = sorted(set.intersection(*(set(values[source]) for source in sources))) if sources else []
    return sources, common, np.array([[values[source][i] for source in sources] for i in common], dtype=np.float64)


def ranks_per_image(matrix, lower_is_better):
    """Rank of each source on each image (N, S): 1 the best in the score's direction, ties averaged."""
    return stats.rankdata(matrix if lower_is_better else -matrix, axis=1)


def friedman_p(matrix):
    """p of Friedman's test that the S sources (columns of matrix (N, S)) rank alike; nan for fewer than 3
    sources or 2 images, or where every image ties every source (the test's tie correction is then 0, and
    scipy divides by it)."""
    if matrix.shape[1] < 3 or matrix.shape[0] < 2:
        return math.nan
    if np.all(matrix == matrix[:, :1]):
        return math.nan
    return float(stats.friedmanchisquare(*matrix.T).pvalue)


def krippendorff_alpha(ranks):
    """Krippendorff's alpha, ordinal, of the images' rankings (N images, S sources): the images are the
    raters, the sources the units they rank (the `krippendorff` package). nan below 2 images or 2 sources."""
    import krippendorff
    if ranks.shape[0] < 2 or ranks.shape[1] < 2 or len(np.unique(ranks)) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))


def ordinal_alphas(value_counts):
    """Krippendorff's ordinal alpha of each of B tables value_counts (B, U units, V values in increasing
    order): how many raters gave each unit each value. The formulas of the `krippendorff` package (Krippendorff,
    Content Analysis, 2004, section 12) written over B tables at once, for the bootstrap: coincidences
    o[v, w] = sum over units of (n_uv n_uw - [v = w] n_uv) / (m_u - 1), m_u the unit's values (at least 2);
    n_v = sum_w o[v, w]; ordinal distance d[v, w] = (n_v + ... + n_w - (n_v + n_w) / 2)^2; expected coincidences
    e[v, w] = (n_v n_w - [v = w] n_v) / (n - 1); alpha = 1 - sum(o d) / sum(e d). (B,); nan where every value
    is the same. The tests compare it with the package."""
    counts = np.asarray(value_counts, dtype=np.float64)
    values = counts.shape[2]
    weights = 1 / (np.maximum(counts.sum(axis=2), 2) - 1)  # (B, U)
    diagonal = np.einsum("bu,buv->bv", weights, counts)
    observed = np.einsum("bu,buv,buw->bvw", weights, counts, counts) - diagonal[:, :, None] * np.eye(values)
    n_v = observed.sum(axis=2)  # (B, V)
    n = n_v.sum(axis=1)
    cumulative = np.cumsum(n_v, axis=1)
    indices = np.arange(values)
    low, high = np.minimum.outer(indices, indices), np.maximum.outer(indices, indices)
    between = cumulative[:, high] - cumulative[:, low] + n_v[:, low]  # n_low + ... + n_high
    distances = (between - (n_v[:, :, None] + n_v[:, None, :]) / 2) ** 2
    expected = (n_v[:, :, None] * n_v[:, None, :] - n_v[:, :, None] * np.eye(values)) / (n - 1)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (observed * distances).sum(axis=(1, 2)) / (expected * distances).sum(axis=(1, 2))


def alpha_interval(ranks, resamples, seed):
    """(alpha, low, high): Krippendorff's alpha of ranks (N, S) (the `krippendorff` package) and its 95%
    percentile bootstrap interval, resampling the images (ordinal_alphas of every resample at once)."""
    alpha = krippendorff_alpha(ranks)
    if math.isnan(alpha):
        return alpha, math.nan, math.nan
    multiplicity = resample_counts(len(ranks), resamples, seed).astype(np.float64)
    domain = np.unique(ranks)
    one_hot = (ranks[:, :, None] == domain).astype(np.float64)  # (N images, S sources, V values)
    value_counts = np.einsum("bn,nsv->bsv", multiplicity, one_hot)
    low, high = np.nanpercentile(ordinal_alphas(value_counts), [2.5, 97.5])
    return alpha, float(low), float(high)


@dataclasses.dataclass
class Reliability:
    """How far one score can be trusted in one experiment. sources: in sorted order; images: the images every
    source scored; mean_ranks: {source: mean rank over those images, 1 the best}; friedman_p: Friedman's test;
    alpha, low, high: Krippendorff's alpha of the images' rankings and its 95% bootstrap interval."""
    sources: list
    images: int
    mean_ranks: dict
    friedman_p: float
    alpha: float
    low: float
    high: float


def reliability(values, lower_is_better, resamples=1000, seed=0):
    """The Reliability of one score (values: {source: {test index: value}}), on the images every source scored."""
    sources, common, matrix = common_matrix(values)
    if not common:
        return Reliability(sources, 0, {}, math.nan, math.nan, math.nan, math.nan)
    ranks = ranks_per_image(matrix, lower_is_better)
    alpha, low, high = alpha_interval(ranks, resamples, seed)
    return Reliability(sources, len(common), dict(zip(sources, ranks.mean(axis=0).tolist())), friedman_p(matrix),
                       alpha, low, high)


def reliability_words(alpha, images=None, sources=None):
    """What Krippendorff's thresholds say of an alpha (images, sources: the counts it was computed over, which
    tell why an alpha is not computable)."""
    if math.isnan(alpha):
        if images is not None and sources is not None and images >= 2 and sources >= 2:
            return "not computable: the sources are tied on every image (no ranking to agree on)"
        return "not computable (fewer than 2 images or sources)"
    if alpha >= RELIABLE:
        return f"at least {RELIABLE}: the images rank the sources consistently"
    if alpha >= TENTATIVE:
        return f"between {TENTATIVE} and {RELIABLE}: the images' rankings agree enough for tentative conclusions only"
    return f"below {TENTATIVE}: the images do not rank the sources consistently"


def score_agreement(values_per_score):
    """(score names, (K, K) Spearman correlations, (K, K) pair counts) between every two scores over the
    (image, source) pairs both have. values_per_score: {score name: {source: {test index: value}}}."""
    names = list(values_per_score)
    correlations, counts = np.eye(len(names)), np.zeros((len(names), len(names)), dtype=int)
    for i, first in enumerate(names):
        for j, second in enumerate(names):
            keys = sorted({(source, index) for source, per_image in values_per_score[first].items()
                           for index in per_image}
                          & {(source, index) for source, per_image in values_per_score[second].items()
                             for index in per_image})
            counts[i, j] = len(keys)
            if i == j:
                continue
            first_values = [values_per_score[first][s][k] for s, k in keys]
            second_values = [values_per_score[second][s][k] for s, k in keys]
            # undefined for fewer than 3 pairs, or for a constant score (scipy would warn and give nan)
            defined = len(keys) > 2 and len(set(first_values)) > 1 and len(set(second_values)) > 1
            correlations[i, j] = stats.spearmanr(first_values, second_values).statistic if defined else math.nan
    return names, correlations, counts


def holm_matrix(pairs):
    """(sources, (S, S) matrix) of the Holm-adjusted p-values of pairs (compare_sources), symmetric, 1 on
    the diagonal."""
    sources = sorted({pair.first for pair in pairs} | {pair.second for pair in pairs})
    matrix = np.ones((len(sources), len(sources)))
    for pair in pairs:
        i, j = sources.index(pair.first), sources.index(pair.second)
        matrix[i, j] = matrix[j, i] = pair.p_holm
    return sources, matrix


@dataclasses.dataclass
class SeedComparison:
    """first vs second on one score over several experiments (seeds): seeds, the experiments both have; the
    mean over them of the per-seed difference of the experiment means (first - second) and the half-width of
    its 95% t-interval; welch_p: Welch's t-test on the per-seed means of each (unpaired, as before)."""
    first: str
    second: str
    seeds: int
    mean_difference: float
    half_width: float
    welch_p: float


def welch_matrix(aucs):
    """p-values of Welch's t-test between every pair of models: (model ids, (M, M) array); 1 on the diagonal
    and where a model has fewer than 2 values (welch_p_values)."""
    model_ids = sorted(aucs)
    position = {model_id: k for k, model_id in enumerate(model_ids)}
    pairs = [(first, second) for first in model_ids for second in model_ids
             if first != second and len(aucs[first]) > 1 and len(aucs[second]) > 1]
    values = {model_id: dict(enumerate(np.asarray(aucs[model_id], dtype=np.float64))) for model_id in model_ids}
    p_values = np.ones((len(model_ids), len(model_ids)))
    for (first, second), p in zip(pairs, welch_p_values(values, pairs)):
        p_values[position[first], position[second]] = p
    return model_ids, p_values


def compare_seeds(means):
    """[SeedComparison] of every pair of sources. means: {source: {exp id: the score's mean over the
    experiment's images}}."""
    sources, result = sorted(means), []
    pairs_of_sources = list(itertools.combinations(sources, 2))
    for (first, second), welch in zip(pairs_of_sources, welch_p_values(means, pairs_of_sources)):
        a, b, _, _ = paired_values(means[first], means[second])
        half = float(t_half_width(a - b)) if len(a) > 1 else math.nan
        result.append(SeedComparison(first, second, len(a), float(np.mean(a - b)) if len(a) else math.nan,
                                     half, float(welch)))
    return result
