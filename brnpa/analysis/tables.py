"""What processResults.py prints and writes as tables: number formats, the printed table, the notes under
it, and the CSV files of the scores."""
import os
import time

import numpy as np

from brnpa.core import files
from brnpa.analysis.statistics import defined_mean, defined_median
from brnpa.metrics.scores import SCORES
from brnpa.runs import results_io

MAX_NUMBER_WIDTH = 6


def fmt_number(value, digits=3):
    """value with `digits` decimals, or in scientific notation where that is longer than MAX_NUMBER_WIDTH
    characters (a ratio of a tiny clean score), so that a column keeps its width."""
    text = f"{value:.{digits}f}"
    return text if len(text) <= MAX_NUMBER_WIDTH else f"{value:.2e}"


def fmt(value, half=None, digits=3):
    if value is None or np.isnan(value):
        return "-"
    return fmt_number(value, digits) + ("" if half is None or np.isnan(half) else f" ±{fmt_number(half, digits)}")


def header_names(header):
    """The printed header: each column's name with its direction arrow."""
    return [f"{name} {arrow}" if arrow else name for name, arrow in header]


def print_table(header, rows):
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# The printed table's width: a terminal of 160 columns shows it without wrapping.
TERMINAL_WIDTH = 160
# The groups the printed table is cut into, in order; column_group says which a column is in.
COLUMN_GROUPS = ("model", "faithfulness", "single step", "sanity", "localisation")


def column_group(name):
    """The group of a summary column: the scores by the kind of their task (a curve: faithfulness; the single-step
    task; the sanity checks), the localisation scores, and the rest (accuracy, sparsity, the image count) with
    the model."""
    from brnpa.metrics.localisation import LOCALISATION_SCORES
    from brnpa.metrics.tasks import SANITY_TASK, TASKS
    score = SCORES.get(name[:-len(" median")] if name.endswith(" median") else name)
    if score is not None:
        task = TASKS[score.task]
        return "faithfulness" if task.curve is not None else "sanity" if task.key == SANITY_TASK else "single step"
    return "localisation" if name in LOCALISATION_SCORES else "model"


def column_blocks(header, rows, columns=None, width=TERMINAL_WIDTH):
    """The printed table cut into blocks that fit `width` characters: (title, header, rows) per block, each with
    the first column (the source) and the columns of one group (COLUMN_GROUPS), a group too wide for one block
    cut again; or, with columns (names as in header, without arrows), those columns alone. header: [(name,
    arrow)]; rows: [[source, cell texts...]]."""
    names = [name for name, _ in header]
    if columns is not None:
        groups = [("chosen columns", [names.index(column) for column in columns])]
    else:
        groups = [(group, [i for i in range(1, len(header)) if column_group(names[i]) == group])
                  for group in COLUMN_GROUPS]
    shown = header_names(header)

    def cell_width(i):
        return max(len(str(row[i])) for row in rows + [shown])
    blocks = []
    for title, indices in groups:
        taken, used = [], cell_width(0)
        for i in indices:
            if taken and used + 2 + cell_width(i) > width:
                blocks.append((title, taken))
                taken, used = [], cell_width(0)
            taken.append(i)
            used += 2 + cell_width(i)
        if taken:
            blocks.append((title, taken))
    return [(title, [shown[0]] + [shown[i] for i in indices], [[row[0]] + [row[i] for i in indices] for row in rows])
            for title, indices in blocks]


def wrapped(line, width=TERMINAL_WIDTH):
    """A printed line cut at spaces into lines of at most width characters, the next ones indented (a word
    longer than that, such as a path, stays whole)."""
    import textwrap
    return textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False) or [""]


def print_lines(*lines):
    """Print each line, wrapped to the terminal width."""
    for line in lines:
        for part in wrapped(line):
            print(part)


def directions():
    """'↓: lower is better, ↑: higher is better; no direction: ...' from the table of scores."""
    none = [score.name for score in SCORES.values() if score.lower_is_better is None]
    return (f"↓: lower is better, ↑: higher is better; no direction, information only: sparsity (how concentrated "
            f"a map is), {', '.join(none)}.")


def tiny_denominator_notes(denominators, threshold):
    """One line per ratio score: which sources have images whose denominator (the clean score of AD and ADD) is
    below threshold, and how many. denominators: Experiment.denominators."""
    notes = []
    for name, per_source in denominators.items():
        counts = {source: int((values < threshold).sum()) for source, values in sorted(per_source.items())}
        found = ", ".join(f"{source} {count}" for source, count in counts.items() if count)
        notes.append(f"{name}: images whose clean score is below {threshold:g}, which can dominate the mean "
                     f"(the median is beside it): {found or 'none'}")
    return notes


def noise_ceiling_notes(sanity_sets):
    """One line per source whose sanity set says that two passes of the unchanged model give different maps (a
    model that draws in its forward pass, such as BR-NPA's random-vector ablations): their mean Spearman ρ and
    SSIM, against which its MPRT and class ρ are to be read (a randomisation cannot make the maps agree more
    than the model agrees with itself). sanity_sets: {source: the arrays of its sanity set}; a set written
    before these arrays existed is skipped."""
    notes = []
    for source, arrays in sorted(sanity_sets.items()):
        if "noise_rho" not in arrays:
            continue
        if len(arrays.get("non_finite", ())):  # the images the table keeps
            kept = ~np.isin(arrays["img_inds"], arrays["non_finite"])
            arrays = {name: arrays[name][kept] for name in ("noise_rho", "noise_ssim", "mprt_rho", "class_rho")}
        noise_rho = defined_mean(arrays["noise_rho"])
        if noise_rho < 1.0:
            notes.append(f"{source}: two passes of the unchanged model agree at ρ {noise_rho:.3f} and SSIM "
                         f"{defined_mean(arrays['noise_ssim']):.3f} (its forward pass draws at random): its MPRT ρ "
                         f"{defined_mean(arrays['mprt_rho'][:, -1]):.3f} and class ρ "
                         f"{defined_mean(arrays['class_rho']):.3f} are to be read against that ceiling, not 1")
    return notes


def chance_note(uniform_energy):
    return [] if uniform_energy is None else [
        f"energy in part of a uniform saliency map (chance): {uniform_energy:.3f}"]


def write_score_csvs(exp_folder, score, aucs, indices):
    """attMetrics_<key>.csv (the mean, and the median for a ratio score) and attMetrics_<key>_pop.csv (every
    image's value, one column img_<test index> per test image some source was scored on, empty where a source
    was not) of a score. aucs: {model_id: per-image values (N,)}; indices: {model_id: their test indices (N,)}."""
    paths = results_io.summary_paths(exp_folder, score.key)
    ratio = score.denominator is not None  # a ratio score's mean can hang on one image: its median goes beside it
    rows = [[model_id, defined_mean(values)] + ([defined_median(values)] if ratio else [])
            for model_id, values in sorted(aucs.items())]
    files.atomic_write_csv(paths["mean"], ["model_id", "mean"] + (["median"] if ratio else []), rows)
    columns = sorted({int(index) for model_id in aucs for index in indices[model_id]})
    pop_rows = []
    for model_id, values in sorted(aucs.items()):
        by_index = dict(zip((int(index) for index in indices[model_id]), values))
        pop_rows.append([model_id] + [by_index.get(index, "") for index in columns])
    files.atomic_write_csv(paths["pop"], ["model_id"] + [f"img_{index}" for index in columns], pop_rows)


def write_experiment_csvs(exp_folder, experiment):
    """attMetrics_<key>.csv and _pop.csv of every score of one experiment (an analysis.experiment.Experiment), and
    scores_long.csv, every per-image value in one table (image, model, source, score, value: pandas reads it with
    read_csv; a value left out or undefined on an image is empty); returns {score name: {model_id: per-image
    values}} for the scores that have values."""
    from brnpa.metrics.saliency import POST_HOC_NAMES
    written, long_rows = {}, []
    for name, score in SCORES.items():
        per_image = {model_id: row[name] for model_id, row in experiment.rows.items() if name in row}
        if per_image:
            indices = {model_id: experiment.sets[score.task][model_id]["img_inds"] for model_id in per_image}
            write_score_csvs(exp_folder, score, per_image, indices)
            written[name] = per_image
            for source, values in sorted(per_image.items()):
                model_id = results_io.parse_source_id(source, POST_HOC_NAMES)[0]
                long_rows += [[int(index), model_id, source, name, value if np.isfinite(value) else ""]
                              for index, value in zip(indices[source], values)]
    files.atomic_write_csv(results_io.long_scores_path(exp_folder), ["image", "model", "source", "score", "value"],
                           long_rows)
    return written


def write_summary_runs(folders, experiments):
    """summary_runs.json in each folder: the runs (per experiment, model id -> run id) the summaries and plots
    beside it were made from, and when. Only processResults writes the summaries; this says what they show."""
    record = {"written": time.strftime("%Y-%m-%d %H:%M:%S"),
              "runs": {exp_id: experiment.run_ids for exp_id, experiment in experiments.items()}}
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        files.atomic_write_json(results_io.summary_runs_path(folder), record)


def print_incomplete(experiments):
    """The lines on what is missing or mixed, each whole: most end with the command that repairs it, which must
    stay one line to be copied."""
    for exp_id, experiment in experiments.items():
        for note in experiment.not_computed:
            print(f"not computed in {exp_id}: {note}")
        for note in experiment.incomplete:
            print(f"incomplete in {exp_id}: {note}")


def write_comparison_csv(path, pairs, test):
    """compare_<key>.csv: one row per pair of sources on a score (analysis.comparisons.PairedComparison)."""
    header = ["first", "second", "n", "only_first", "only_second", "median_difference", "ci95_low", "ci95_high",
              "rank_biserial", "wilcoxon_p", "welch_p", "holm_p", "holm_test", "better"]
    rows = [[pair.first, pair.second, pair.n, pair.only_first, pair.only_second, pair.median_difference, pair.low,
             pair.high, pair.effect, pair.p, pair.welch_p, pair.p_holm, test, pair.better] for pair in pairs]
    files.atomic_write_csv(path, header, rows)


def write_seed_comparison_csv(path, pairs):
    """compare_<key>.csv of several experiments: one row per pair, paired by seed (SeedComparison)."""
    header = ["first", "second", "seeds", "mean_difference", "ci95", "welch_p_seed_means"]
    rows = [[pair.first, pair.second, pair.seeds, pair.mean_difference, pair.half_width, pair.welch_p]
            for pair in pairs]
    files.atomic_write_csv(path, header, rows)


def write_reliability_csv(path, reliability):
    """metric_reliability.csv: per score, Krippendorff's alpha with its interval, Friedman's p and counts."""
    header = ["score", "alpha", "ci95_low", "ci95_high", "images", "sources", "friedman_p"]
    rows = [[name, item.alpha, item.low, item.high, item.images, len(item.sources), item.friedman_p]
            for name, item in reliability.items()]
    files.atomic_write_csv(path, header, rows)


def write_agreement_csv(path, names, correlations, counts):
    """metric_agreement.csv: the Spearman correlation between every two scores over their (image, source)
    pairs, one row per score."""
    files.atomic_write_csv(path, ["score", *names],
                                [[name, *row] for name, row in zip(names, correlations.tolist())])


def comparison_notes(pairs, test, mark):
    """The lines under the table on the paired comparisons: what the mark means, and the images that a pair's
    two sources did not both score."""
    if not pairs:
        return []
    from brnpa.analysis.comparisons import ALPHA, TEST_NAMES
    paired = "on the images both scored" if test == "wilcoxon" else "unpaired, on all the images of each"
    notes = [f"{mark}: better than every other source on that score ({TEST_NAMES[test]} test {paired}, p "
             f"Holm-adjusted over the score's pairs < {ALPHA}); every pair, with the median paired difference, its "
             f"bootstrap 95% interval and the rank-biserial effect size: compare_<score key>.csv"]
    for name, score_pairs in pairs.items():
        uneven = [pair for pair in score_pairs if pair.only_first or pair.only_second]
        if uneven:
            largest = max(uneven, key=lambda pair: pair.only_first + pair.only_second)
            notes.append(f"{name}: {len(uneven)} of {len(score_pairs)} pairs of sources did not score the same "
                         f"images and are paired on the images both scored (the most unpaired: {largest.first} "
                         f"and {largest.second}, {largest.n} paired, {largest.only_first} only in {largest.first}, "
                         f"{largest.only_second} only in {largest.second}; every count: compare_<score key>.csv)")
    return notes


def reliability_lines(reliability):
    """One line per score: Krippendorff's alpha of the images' rankings of the sources, and what it says."""
    from brnpa.analysis.comparisons import reliability_words
    return [f"{name}: alpha {fmt_number(item.alpha)} [{fmt_number(item.low)}, {fmt_number(item.high)}] over "
            f"{item.images} images and {len(item.sources)} sources, "
            f"{reliability_words(item.alpha, item.images, len(item.sources))}"
            for name, item in reliability.items()]
