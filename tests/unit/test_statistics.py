"""The paired comparisons and reliability measures of brnpa/analysis/comparisons.py, each against an independent
computation: scipy called directly, a hand-worked example, or a published worked example."""
import math

import numpy as np
import pytest
from scipy import stats

from brnpa.analysis import comparisons


def paired_example():
    """Two sources whose per-image difference is small but consistent, on images that differ a lot: the
    paired test sees it, an unpaired one does not. The second source's dict is filled in reverse order, so
    pairing by position instead of by test index gives other pairs."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 40)
    first = base + 0.05 + rng.normal(0, 0.01, 40)
    return ({i: first[i] for i in range(40)}, {i: base[i] for i in reversed(range(40))}, first, base)


def scipy_interval(a, b, resamples, seed):
    return stats.bootstrap((a, b), lambda x, y, axis: np.median(x - y, axis=axis), paired=True, vectorized=True,
                           n_resamples=resamples, method="percentile",
                           random_state=np.random.default_rng(seed)).confidence_interval


def test_paired_comparison_is_scipy_called_directly():
    first, second, a, b = paired_example()
    pair, = comparisons.compare_sources({"a": first, "b": second}, True, resamples=500, seed=3)
    assert pair.n == 40 and pair.only_first == pair.only_second == 0
    assert pair.p == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert pair.p < 1e-6 < stats.mannwhitneyu(a, b).pvalue  # paired, not unpaired
    interval = scipy_interval(a, b, 500, 3)
    assert pair.median_difference == pytest.approx(np.median(a - b))
    assert (pair.low, pair.high) == pytest.approx((interval.low, interval.high))


def test_the_pairs_bootstrapped_together_get_scipys_intervals_one_by_one():
    rng = np.random.default_rng(6)
    values = {name: {i: float(v) for i, v in enumerate(np.round(rng.normal(0, 1, 41), 1))} for name in "abc"}
    values["d"] = {i: float(v) for i, v in enumerate(rng.normal(0, 1, 30), start=20)}  # other images: own group
    for pair in comparisons.compare_sources(values, True, resamples=300, seed=2):
        common = sorted(set(values[pair.first]) & set(values[pair.second]))
        a, b = (np.array([values[name][i] for i in common]) for name in (pair.first, pair.second))
        interval = scipy_interval(a, b, 300, 2)
        assert pair.n == len(common) and pair.median_difference == pytest.approx(np.median(a - b))
        assert (pair.low, pair.high) == pytest.approx((interval.low, interval.high)), (pair.first, pair.second)


def test_welch_is_scipy_ttest_ind_on_all_the_values_of_each_source():
    first, second, a, b = paired_example()
    third = {i: float(v) for i, v in enumerate(np.random.default_rng(5).normal(0.5, 0.3, 25))}  # other images
    values = {"a": first, "b": second, "c": third}
    pairs = {(pair.first, pair.second): pair for pair in comparisons.compare_sources(values, True, resamples=50)}
    assert pairs["a", "b"].welch_p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert pairs["a", "c"].welch_p == pytest.approx(
        stats.ttest_ind(a, list(third.values()), equal_var=False).pvalue)


def test_only_the_images_both_scored_are_paired():
    first = {0: 1.0, 1: 2.0, 2: 3.0, 5: 9.0}
    second = {1: 1.5, 2: 2.0, 0: 0.0, 7: 4.0, 8: 4.0}
    a, b, only_first, only_second = comparisons.paired_values(first, second)
    assert a.tolist() == [1.0, 2.0, 3.0] and b.tolist() == [0.0, 1.5, 2.0]
    assert (only_first, only_second) == (1, 2)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06
    adjusted = comparisons.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(comparisons.holm([0.01, math.nan])[1]) and comparisons.holm([0.01, math.nan])[0] == 0.01


def test_holm_is_statsmodels_multipletests():
    from statsmodels.stats.multitest import multipletests
    p_values = np.random.default_rng(2).uniform(0, 0.2, 30) ** 2
    p_values[[3, 7]] = p_values[5]  # ties
    assert comparisons.holm(p_values).tolist() == pytest.approx(multipletests(p_values, method="holm")[1].tolist())


def test_rank_biserial_by_hand():
    # |d| without the zero: 1, 2, 3, 4 -> ranks 1, 2, 3, 4; R+ = 1 + 3 + 4 = 8, R- = 2: (8 - 2) / 10
    assert comparisons.rank_biserial([1, -2, 3, 0, 4]) == pytest.approx(0.6)
    assert comparisons.rank_biserial([0, 0]) == 0.0


def test_the_better_source_follows_the_score_direction():
    first, second, _, _ = paired_example()  # "a" is higher on every image
    values = {"a": first, "b": second}
    lower = comparisons.compare_sources(values, lower_is_better=True, resamples=100)
    higher = comparisons.compare_sources(values, lower_is_better=False, resamples=100)
    assert lower[0].better == "b" and higher[0].better == "a"
    assert comparisons.significantly_best(higher) == "a"
    welch = comparisons.compare_sources(values, lower_is_better=True, test="welch", resamples=100)
    assert welch[0].better == ""  # unpaired, the consistent difference drowns in the spread between images


def test_mean_ranks_by_hand():
    matrix = np.array([[1., 2., 3.], [2., 1., 3.], [1., 3., 2.]])  # 3 images x 3 sources
    assert comparisons.ranks_per_image(matrix, True).mean(axis=0).tolist() == pytest.approx([4 / 3, 2, 8 / 3])
    assert comparisons.ranks_per_image(matrix, False).mean(axis=0).tolist() == pytest.approx([8 / 3, 2, 4 / 3])
    assert comparisons.friedman_p(matrix) == pytest.approx(stats.friedmanchisquare(*matrix.T).pvalue)


def test_krippendorff_alpha_on_the_published_example():
    """Krippendorff's own example (Computing Krippendorff's Alpha-Reliability, 2011): 4 observers, 12 units,
    missing values; the published ordinal alpha is 0.815 (nominal 0.743, interval 0.849)."""
    n = np.nan
    observers = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
                          [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                          [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
                          [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert comparisons.krippendorff_alpha(observers) == pytest.approx(0.815, abs=5e-4)
    value_counts = np.array([[np.sum(unit == value) for value in range(1, 6)] for unit in observers.T])  # (12, 5)
    assert comparisons.ordinal_alphas(value_counts[None])[0] == pytest.approx(0.815, abs=5e-4)


def test_the_bootstrap_alphas_are_the_package_s_resample_by_resample():
    import krippendorff
    rng = np.random.default_rng(4)
    ranks = comparisons.ranks_per_image(np.round(rng.normal(0, 1, (25, 5)) + np.arange(5) * 0.4), True)  # ties
    alpha, low, high = comparisons.alpha_interval(ranks, resamples=200, seed=3)
    draws = np.random.default_rng(3).integers(0, 25, (200, 25))  # the slow way: the package on each resample
    alphas = [krippendorff.alpha(reliability_data=ranks[drawn], level_of_measurement="ordinal") for drawn in draws]
    assert alpha == pytest.approx(krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))
    assert (low, high) == pytest.approx(tuple(np.percentile(alphas, [2.5, 97.5])))


def test_alpha_of_images_that_rank_alike_is_one_and_its_words():
    ranks = np.tile([1., 2., 3., 4.], (10, 1))
    alpha, low, high = comparisons.alpha_interval(ranks, resamples=20, seed=0)
    assert alpha == low == high == pytest.approx(1.0)
    assert "consistently" in comparisons.reliability_words(0.9)
    assert "tentative" in comparisons.reliability_words(0.7)
    assert "do not" in comparisons.reliability_words(0.3)


def test_score_agreement_is_spearman_over_image_source_pairs():
    rng = np.random.default_rng(1)
    first = {"a": {i: rng.random() for i in range(6)}, "b": {i: rng.random() for i in range(6)}}
    second = {"a": {i: -first["a"][i] for i in range(6)}, "b": {i: rng.random() for i in range(1, 6)}}
    names, correlations, counts = comparisons.score_agreement({"S1": first, "S2": second})
    keys = [("a", i) for i in range(6)] + [("b", i) for i in range(1, 6)]
    expected = stats.spearmanr([first[s][i] for s, i in keys], [second[s][i] for s, i in keys]).statistic
    assert names == ["S1", "S2"] and counts[0, 1] == 11
    assert correlations[0, 1] == pytest.approx(expected) and correlations[1, 0] == pytest.approx(expected)


def test_the_marks_over_seeds_need_every_experiment():
    from brnpa.analysis.summary import seed_marks

    def pair(first, second, better):
        return comparisons.PairedComparison(first, second, 10, 0, 0, 0.0, 0.0, 0.0, 0.5, 0.001, 0.5, 0.001, better)
    best_everywhere = {"DAUC": [pair("a", "b", "a"), pair("a", "cnn-random", "a"), pair("b", "cnn-random", "b")]}
    b_at_chance = {"DAUC": [pair("a", "b", "a"), pair("a", "cnn-random", "a"), pair("b", "cnn-random", "")]}
    no_winner = {"DAUC": [pair("a", "b", ""), pair("a", "cnn-random", "a"), pair("b", "cnn-random", "b")]}
    def statistics(*experiments):
        return {f"s{k}": (pairs, None, None) for k, pairs in enumerate(experiments)}
    # "b" is not a model with a random floor ("b-random" was not scored): never marked
    assert seed_marks(statistics(best_everywhere, b_at_chance)) == ({"DAUC": "a"}, {})
    best, floor = seed_marks(statistics(best_everywhere, no_winner))
    assert best == {} and floor == {}
    best, floor = seed_marks(statistics({"DAUC": [pair("cnn", "cnn-random", "cnn")]},
                                        {"DAUC": [pair("cnn", "cnn-random", "")]}))
    assert best == {} and floor == {"DAUC": {"cnn"}}  # one experiment at chance is enough for the mark


def test_seed_comparison_pairs_by_seed_and_keeps_welch_on_the_seed_means():
    means = {"a": {"s1": 0.20, "s2": 0.25, "s3": 0.31}, "b": {"s3": 0.40, "s1": 0.22, "s2": 0.30},
             "floor": {"s1": 1.0, "s2": 1.0, "s3": 1.0}}
    pairs = {(pair.first, pair.second): pair for pair in comparisons.compare_seeds(means)}
    differences = np.array([0.20 - 0.22, 0.25 - 0.30, 0.31 - 0.40])  # by seed, whatever the dict order
    assert pairs["a", "b"].mean_difference == pytest.approx(differences.mean())
    assert pairs["a", "b"].half_width == pytest.approx(stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3))
    assert pairs["a", "b"].welch_p == pytest.approx(
        stats.ttest_ind([0.20, 0.25, 0.31], [0.22, 0.30, 0.40], equal_var=False).pvalue)
    assert pairs["a", "floor"].welch_p < 0.01  # a constant floor: no warning, a p-value from the other's spread


def test_undefined_statistics_are_nan_without_a_warning():
    """A score constant over every (image, source) pair has no rank correlation with another, and sources tied
    on every image give Friedman's test nothing to test: nan, where scipy would warn (ConstantInputWarning, a
    division by zero) before giving it."""
    import warnings
    from brnpa.analysis.comparisons import friedman_p, score_agreement
    values = {"DAUC": {"a": {0: 0.1, 1: 0.2, 2: 0.3}, "b": {0: 0.4, 1: 0.2, 2: 0.9}},
              "class ρ": {"a": {0: 1.0, 1: 1.0, 2: 1.0}, "b": {0: 1.0, 1: 1.0, 2: 1.0}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names, correlations, counts = score_agreement(values)
        tied = friedman_p(np.ones((4, 3)))
    assert names == ["DAUC", "class ρ"] and np.isnan(correlations[0, 1]) and counts[0, 1] == 6
    assert np.isnan(tied) and friedman_p(np.array([[1., 2., 3.], [1., 3., 2.], [2., 1., 3.]])) > 0
