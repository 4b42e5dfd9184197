"""The two summaries of processResults.py: one experiment (intervals over its test images, paired
comparisons of its sources, how far each score can be trusted) and several experiments, one per seed
(intervals over the experiments, comparisons paired by seed). Both end the same way (publish): the table and
its notes printed, the HTML report if asked, and summary_runs.json naming the runs they were made from."""
import dataclasses
import math
import os

import numpy as np

from brnpa.core import files
from brnpa.analysis import comparisons
from brnpa.analysis.experiment import COLUMNS, experiment_rows, indexed_values, seed_values
from brnpa.analysis.plots import (plot_agreement, plot_band_curves, plot_critical_difference, plot_mean_curves,
                                  plot_sanity_curves, plot_ttest)
from brnpa.analysis.sets import SANITY_TASK, sanity_stages, source_saliencies, test_folder_samples
from brnpa.analysis.statistics import defined, defined_mean, defined_median, mean_ci
from brnpa.analysis.tables import (chance_note, column_blocks, comparison_notes, directions, fmt, fmt_number,
                                   noise_ceiling_notes, print_incomplete, print_lines, print_table, reliability_lines,
                                   tiny_denominator_notes, write_agreement_csv, write_comparison_csv,
                                   write_experiment_csvs, write_reliability_csv, write_seed_comparison_csv,
                                   write_summary_runs)
from brnpa.core.errors import UserError
from brnpa.metrics.localisation import LOCALISATION_SCORES
from brnpa.metrics.saliency import POST_HOC_NAMES
from brnpa.metrics.scores import SCORES
from brnpa.metrics.tasks import TASKS
from brnpa.runs import results_io
from brnpa.runs.args import run_signature

# The report's plots (the p-value matrices, plot_pair_matrices, stay files: the report shows each comparison once,
# in its critical-difference diagram and its table of pairs).
PLOT_CAPTIONS = [(results_io.curves_plot_name(key), f"mean {task.curve.name} curve") for key, task in TASKS.items()
                 if task.curve is not None]
SIGNIFICANTLY_BEST = "*"
NOT_ABOVE_FLOOR = "°"
RANDOM_FLOOR = "random"  # the saliency source whose scores are chance level (brnpa/metrics/saliency.py)


@dataclasses.dataclass
class Summary:
    """A summary table. header: [(column name, direction arrow)]; table: [(source, [(text, value)])] with one
    cell per column after the first; caption: the line above it; notes: the lines below it."""
    caption: str
    header: list
    table: list
    notes: list


def mean_cell(values):
    """(text, value) of a column's cell: the mean and 95% interval of the finite values, '-' without any."""
    values = None if values is None else defined(values)
    if values is None or len(values) == 0:
        return "-", None
    mean, half = mean_ci(values)
    return fmt(mean, half), mean


def plot_sanity(vis_folder, exp_folder, experiment):
    """sanity.png: the mean correlation of each source's map with its map after each stage of the cascading
    randomisation, with its 95% interval, where the experiment has sets of the sanity task."""
    sets = experiment.sets.get(SANITY_TASK, {})
    if not sets:
        return
    stages = {source: sanity_stages(exp_folder, source) for source in sets}
    os.makedirs(vis_folder, exist_ok=True)
    plot_sanity_curves(os.path.join(vis_folder, results_io.sanity_plot_name()),
                       {source: arrays["mprt_rho"] for source, arrays in sets.items()}, stages)


def plot_curves(vis_folder, curves_per_key, plot):
    """plot(path, curve metric, curves) for each curve task with curves (curves_per_key: {task key: curves})."""
    for key, curves in curves_per_key.items():
        if curves:
            os.makedirs(vis_folder, exist_ok=True)
            plot(os.path.join(vis_folder, results_io.curves_plot_name(key)), TASKS[key].curve, curves)


def plot_tests(vis_folder, values_per_score):
    """The Welch matrix of each score (values_per_score: {score name: {source: values}}), the released
    protocol's view of the seeds."""
    for name, values in values_per_score.items():
        os.makedirs(vis_folder, exist_ok=True)
        plot_ttest(os.path.join(vis_folder, results_io.ttest_plot_name(SCORES[name].key)), SCORES[name],
                   *comparisons.welch_matrix(values), "Welch t-test p-values")


def plot_comparisons(vis_folder, pairs, reliability, agreement):
    """Per score, its critical-difference diagram; the heatmap of the agreement between the scores."""
    os.makedirs(vis_folder, exist_ok=True)
    for name, score_pairs in pairs.items():
        if score_pairs and len(reliability[name].mean_ranks) > 1:
            sources, matrix = comparisons.holm_matrix(score_pairs)
            plot_critical_difference(os.path.join(vis_folder, results_io.cd_plot_name(SCORES[name].key)),
                                     SCORES[name], reliability[name], sources, matrix)
    if len(agreement[0]) > 1:
        plot_agreement(os.path.join(vis_folder, results_io.agreement_plot_name()), *agreement)


def plot_pair_matrices(vis_folder, pairs, test):
    """Per score, the matrix of its pairs' Holm-adjusted p-values (one experiment; over seeds, the files of this
    name hold the Welch tests of the per-seed means, plot_tests)."""
    os.makedirs(vis_folder, exist_ok=True)
    for name, score_pairs in pairs.items():
        if score_pairs:  # a score of one source: nothing to compare
            sources, matrix = comparisons.holm_matrix(score_pairs)
            plot_ttest(os.path.join(vis_folder, results_io.ttest_plot_name(SCORES[name].key)), SCORES[name],
                       sources, matrix, f"{comparisons.TEST_NAMES[test]} p-values, Holm-adjusted")


def experiment_statistics(exp_folder, experiment, test, resamples):
    """compare_experiment of an Experiment, its CSV files written to exp_folder (compare_<key>.csv,
    metric_reliability.csv, metric_agreement.csv); returns what compare_experiment returns."""
    pairs, reliability, agreement = compare_experiment(indexed_values(experiment), test, resamples)
    for name, score_pairs in pairs.items():
        write_comparison_csv(results_io.compare_path(exp_folder, SCORES[name].key), score_pairs, test)
    if pairs:
        write_reliability_csv(results_io.reliability_path(exp_folder), reliability)
        write_agreement_csv(results_io.agreement_path(exp_folder), *agreement)
    return pairs, reliability, agreement


def compare_experiment(values, test, resamples):
    """The paired comparisons and reliability of one experiment. values: indexed_values of it ({score name:
    {source: {test index: value}}}). Returns ({score name: [PairedComparison]}, {score name: Reliability},
    score_agreement's (names, correlations, counts))."""
    pairs, reliability = {}, {}
    for name, per_source in values.items():
        lower = SCORES[name].lower_is_better
        if lower is None:  # a score without direction (class ρ) is information, not a ranking
            continue
        pairs[name] = comparisons.compare_sources(per_source, lower, test, resamples)
        reliability[name] = comparisons.reliability(per_source, lower, resamples)
    return pairs, reliability, comparisons.score_agreement({name: values[name] for name in pairs})


def below_floor(pairs):
    """{score name: the sources not significantly better than the random floor of their model
    ('<model_id>-random'), where that floor was scored}."""
    marked = {}
    for name, score_pairs in pairs.items():
        sources = {pair.first for pair in score_pairs} | {pair.second for pair in score_pairs}
        for source in sources:
            model_id = results_io.parse_source_id(source, POST_HOC_NAMES)[0]
            floor = results_io.source_id(model_id, RANDOM_FLOOR)
            if floor in sources and source != floor and source in comparisons.not_better_than(score_pairs, floor):
                marked.setdefault(name, set()).add(source)
    return marked


def score_notes(experiments):
    """The notes (Score.note) of the scores some source of the experiments has a value of, in table order."""
    shown = {name for experiment in experiments for row in experiment.rows.values() for name in row}
    return [score.note for name, score in SCORES.items() if name in shown and score.note]


def floor_note(how):
    """The note under a table whose cells carry NOT_ABOVE_FLOOR; how: by which test, over what (', by the same
    test', ' in at least one experiment, by the same test')."""
    return (f"{NOT_ABOVE_FLOOR}: not better than the same model's random floor ('<model_id>-{RANDOM_FLOOR}') on that "
            f"score{how}")


def marks(source, name, best, floor):
    """The marks of a source's cell on score `name`: SIGNIFICANTLY_BEST where best[name] is the source,
    NOT_ABOVE_FLOOR where the source is in floor[name]."""
    return (SIGNIFICANTLY_BEST if best.get(name) == source else "") + (
        NOT_ABOVE_FLOOR if source in floor.get(name, ()) else "")


def seed_marks(statistics):
    """(best, floor) over several experiments, from each experiment's pairs (statistics: {exp id:
    experiment_statistics result}): best[name] is the source significantly better than every other one in
    every experiment; floor[name] holds the sources not better than their model's random floor in at least
    one experiment."""
    per_experiment = [pairs for pairs, _, _ in statistics.values()]
    best, floor = {}, {}
    for name in set().union(*per_experiment):
        winners = {comparisons.significantly_best(pairs.get(name, [])) for pairs in per_experiment}
        if len(winners) == 1 and None not in winners:
            best[name] = winners.pop()
    for pairs in per_experiment:
        for name, sources in below_floor(pairs).items():
            floor.setdefault(name, set()).update(sources)
    return best, floor


def experiment_header():
    """[(name, arrow)] of the table of one experiment: the source, accuracy, sparsity, every score (a ratio score
    with its median beside it), the image count, the localisation scores."""
    header = [("model_id", ""), ("accuracy", ""), ("sparsity", "")]
    for name, score in SCORES.items():
        header += [(name, score.arrow)] + ([(f"{name} median", score.arrow)] if score.denominator else [])
    return header + [("n", ""), *((name, "") for name in LOCALISATION_SCORES)]


def seeds_header():
    """[(name, arrow)] of the table of several experiments: the source, every column of COLUMNS, the count."""
    return [("model_id", ""), *((column, SCORES[column].arrow if column in SCORES else "") for column in COLUMNS),
            ("n", "")]


def table_columns(several):
    """The names of the columns of the printed table (model_id aside), of several experiments or one."""
    return [name for name, _ in (seeds_header() if several else experiment_header())[1:]]


def experiment_summary(experiment, tiny_clean_score, best=None, floor=None):
    """The Summary of one experiment: per source, the mean and 95% interval over the test images of each
    score (and the median of a ratio score), the image counts, and the localisation scores. best: {score name:
    the source significantly better than every other one}, whose cell is marked SIGNIFICANTLY_BEST; floor:
    {score name: the sources not better than their model's random floor}, marked NOT_ABOVE_FLOOR."""
    best, floor = best or {}, floor or {}
    header = experiment_header()
    table = []
    for source, row in sorted(experiment.rows.items()):
        cells = [(fmt(row["accuracy"]), row["accuracy"]), (fmt(row["sparsity"]), row["sparsity"])]
        for name, score in SCORES.items():
            text, value = mean_cell(row.get(name))
            cells.append((text + marks(source, name, best, floor), value))
            if score.denominator:
                median = defined_median(row[name]) if name in row else float("nan")
                median = None if math.isnan(median) else median
                cells.append((fmt(median), median))
        counts = sorted({count for count in (len(defined(row[name])) for name in SCORES if name in row) if count})
        cells.append(("/".join(map(str, counts)) or "-", counts[0] if counts else None))
        cells += [mean_cell(row.get(name)) for name in LOCALISATION_SCORES]
        table.append((source, cells))
    notes = (tiny_denominator_notes(experiment.denominators, tiny_clean_score)
             + noise_ceiling_notes(experiment.sets.get(SANITY_TASK, {})) + chance_note(experiment.uniform_energy))
    return Summary("mean and 95% interval over the test images (none for accuracy, sparsity and the medians); n: "
                   "images per score, several counts when they differ", header, table, notes)


def seeds_summary(exp_ids, experiments, values, tiny_clean_score, best=None, floor=None):
    """The Summary of several experiments: per source, each column's mean over the experiments (a score's
    value in one experiment is its mean over the images) and its 95% t-interval, and the experiment count.
    values: seed_values of the experiments; best, floor: the marks of seed_marks."""
    best, floor = best or {}, floor or {}
    header = seeds_header()
    table = []
    for source, source_values in sorted(values.items()):
        # each column averages the experiments where it is defined: several counts when they differ
        counts = sorted({len(column_values) for column_values in source_values.values() if column_values})
        cells = []
        for column in COLUMNS:
            text, value = mean_cell(source_values[column])
            cells.append((text + (marks(source, column, best, floor) if column in SCORES else ""), value))
        table.append((source, cells + [("/".join(map(str, counts)) or "-", counts[-1] if counts else None)]))
    notes = [f"{exp_id}, {note}" for exp_id, experiment in experiments.items()
             for note in tiny_denominator_notes(experiment.denominators, tiny_clean_score)
             + noise_ceiling_notes(experiment.sets.get(SANITY_TASK, {}))]
    uniform = [experiment.uniform_energy for experiment in experiments.values()
               if experiment.uniform_energy is not None]
    notes += chance_note(np.mean(uniform) if uniform else None)
    return Summary(f"mean and 95% interval over {len(exp_ids)} experiments ({', '.join(exp_ids)}), each its mean over "
                   f"its test images; n: experiments per column, several counts when they differ", header, table,
                   notes)


def publish(summary, out_folder, vis_folder, experiments, report=None, columns=None):
    """Print the summary (in blocks of columns that fit a terminal: tables.column_blocks; columns: the names of
    the only columns to print, or None), write the HTML report if asked (report: the title, the folder and
    Experiment of the images in its gallery, and a note on them or None), write summary_runs.json in out_folder
    and vis_folder, and print what is incomplete."""
    print_lines(summary.caption)
    rows = [[source, *(text for text, _ in cells)] for source, cells in summary.table]
    for title, header, block_rows in column_blocks(summary.header, rows, columns):
        print(f"-- {title}")
        print_table(header, block_rows)
    print_lines(directions(), *summary.notes)
    if report is not None:
        write_html_report(vis_folder, summary, *report)
    write_summary_runs([out_folder] + ([vis_folder] if os.path.isdir(vis_folder) else []), experiments)
    if os.path.isdir(vis_folder):
        print_lines(f"CSV files in {out_folder}, plots in {vis_folder}")
    print_incomplete(experiments)


def statistics_sections(vis_folder, pairs, reliability, test):
    """The report's sections on the paired comparisons (the critical-difference diagrams, and the pairs of
    each score in a sortable table) and on the reliability of the scores (alphas, agreement heatmap)."""
    from brnpa.analysis.report.build import Section, Table

    def cell(value, digits=3):
        return fmt(value, digits=digits), value

    def present(names):
        return [(caption, name) for caption, name in names if os.path.exists(os.path.join(vis_folder, name))]

    pair_header = [("pair", ""), ("n", ""), ("median difference", ""), ("95% low", ""), ("95% high", ""),
                   ("rank-biserial", ""), (f"{comparisons.TEST_NAMES['wilcoxon']} p", ""), ("Welch p", ""),
                   ("Holm p", ""), ("better", "")]
    tables = [(name, Table(pair_header, [(f"{pair.first} vs {pair.second}",
                                          [(str(pair.n), pair.n), cell(pair.median_difference), cell(pair.low),
                                           cell(pair.high), cell(pair.effect), cell(pair.p, 4), cell(pair.welch_p, 4),
                                           cell(pair.p_holm, 4), (pair.better or "-", pair.better)])
                                         for pair in score_pairs], []))
              for name, score_pairs in pairs.items()]
    comparison = Section(
        "Comparisons", f"Every two sources on the images both scored; Holm p: the {comparisons.TEST_NAMES[test]} "
        f"test's p after Holm's correction over the pairs of the score; median difference: first - second.",
        present([(f"critical-difference diagram, {name}", results_io.cd_plot_name(SCORES[name].key))
                 for name in pairs]), tables, [])
    trust_header = [("score", ""), ("alpha", ""), ("95% low", ""), ("95% high", ""), ("images", ""),
                    ("sources", ""), ("Friedman p", "")]
    trust = Section(
        "Can the metrics be trusted here?", "Krippendorff's alpha of the images' rankings of the sources (the "
        f"images as raters): at least {comparisons.RELIABLE} reliable, at least {comparisons.TENTATIVE} for "
        "tentative conclusions only; and the agreement between the scores over the (image, source) pairs.",
        present([("agreement between the scores (Spearman)", results_io.agreement_plot_name())]),
        [("reliability", Table(trust_header, [(name, [cell(item.alpha), cell(item.low), cell(item.high),
                                                      (str(item.images), item.images),
                                                      (str(len(item.sources)), len(item.sources)),
                                                      cell(item.friedman_p, 4)])
                                               for name, item in reliability.items()], []))],
        reliability_lines(reliability))
    return [comparison, trust]


def write_html_report(vis_folder, summary, title, exp_folder, experiment, gallery_note=None, statistics=None):
    """vis_folder/report.html (analysis/report/): the summary's table, the plots in vis_folder, the sections
    of the statistics (statistics: (pairs, reliability, test) of the gallery's experiment, or None), and the
    gallery of one experiment's evaluated test images; prints its path."""
    from brnpa.analysis.report.build import Table, write_report
    from brnpa.analysis.report.gallery import experiment_gallery
    sources = sorted({source for per_source in experiment.sets.values() for source in per_source})
    saliencies = {source: source_saliencies(exp_folder, experiment.landed, source) for source in sources}
    gallery = experiment_gallery(exp_folder, experiment.sets, experiment.landed, saliencies)
    if gallery_note:
        gallery.note = gallery_note + ("; " + gallery.note if gallery.note else "")
    plots = [(caption, name) for name, caption in PLOT_CAPTIONS if os.path.exists(os.path.join(vis_folder, name))]
    table = Table(summary.header, summary.table, summary.notes + [directions()], summary.caption)
    sections = statistics_sections(vis_folder, *statistics) if statistics and statistics[0] else []
    if os.path.exists(os.path.join(vis_folder, results_io.sanity_plot_name())):
        from brnpa.analysis.report.build import Section
        sections.append(Section(
            "Sanity", "Each source's map against its map after the model's stages are re-initialised one after "
            "the other from the top (mean Spearman ρ over the images, 95% interval): a map that stays near 1 does "
            "not depend on the trained weights. The table's MPRT columns are the last stage; class ρ compares the "
            "maps of two classes, input ρ the maps of two images.",
            [("sanity: cascading model randomisation", results_io.sanity_plot_name())], [], []))
    path = write_report(vis_folder, title, table, plots, gallery, sections)
    print(f"report of {len(gallery.images)} test images x {len(gallery.sources)} sources: {path}")


def summarise_experiment(results_dir, vis_dir, exp_id, report=False, tiny_clean_score=1e-3, test="wilcoxon",
                         resamples=1000, columns=None):
    """One experiment: CSVs, plots and a table with 95% intervals over the test images, the paired comparisons
    of its sources and the reliability of its scores (and the HTML report). tiny_clean_score: the clean scores
    below it are counted, per source, in a note on AD and ADD; test: the test of the pairs ('wilcoxon' or
    'welch'); resamples: of each bootstrap interval; columns: the only columns to print (None: every column, in
    groups)."""
    exp_folder, vis_folder = results_io.exp_dir(results_dir, exp_id), results_io.exp_dir(vis_dir, exp_id)
    experiment = experiment_rows(exp_folder)
    write_experiment_csvs(exp_folder, experiment)
    pairs, reliability, agreement = experiment_statistics(exp_folder, experiment, test, resamples)
    if pairs:
        plot_comparisons(vis_folder, pairs, reliability, agreement)
        plot_pair_matrices(vis_folder, pairs, test)
    plot_curves(vis_folder, experiment.curves, plot_mean_curves)
    best = {name: comparisons.significantly_best(score_pairs) for name, score_pairs in pairs.items()}
    floor = below_floor(pairs)
    summary = experiment_summary(experiment, tiny_clean_score, best, floor)
    summary.notes += comparison_notes(pairs, test, SIGNIFICANTLY_BEST) + reliability_lines(reliability)
    if floor:
        summary.notes.append(floor_note(", by the same test"))
    summary.notes += score_notes([experiment])
    plot_sanity(vis_folder, exp_folder, experiment)
    publish(summary, exp_folder, vis_folder, {exp_id: experiment},
            (exp_id, exp_folder, experiment, None, (pairs, reliability, test)) if report else None, columns)


def summarise_seeds(results_dir, vis_dir, exp_ids, report=False, tiny_clean_score=1e-3, test="wilcoxon",
                    resamples=1000, columns=None):
    """Several experiments (seeds): each experiment's CSVs and statistics as summarise_experiment writes them
    (without its plots); per-model means over the experiments with 95% t-intervals (summary.csv), every two
    sources paired by seed (compare_<key>.csv), Welch tests on the per-experiment means, mean curves with a
    band (tiny_clean_score, test, resamples, columns: as summarise_experiment's)."""
    summary_id = "+".join(exp_ids)
    summary_folder, vis_folder = results_io.exp_dir(results_dir, summary_id), results_io.exp_dir(vis_dir, summary_id)
    experiments = {exp_id: experiment_rows(results_io.exp_dir(results_dir, exp_id)) for exp_id in exp_ids}
    check_distinct_runs(experiments)
    statistics = {}
    for exp_id, experiment in experiments.items():
        write_experiment_csvs(results_io.exp_dir(results_dir, exp_id), experiment)
        statistics[exp_id] = experiment_statistics(results_io.exp_dir(results_dir, exp_id), experiment, test,
                                                   resamples)
        write_summary_runs([results_io.exp_dir(results_dir, exp_id)], {exp_id: experiment})
    values = seed_values([experiment.rows for experiment in experiments.values()])
    os.makedirs(summary_folder, exist_ok=True)
    write_seeds_csvs(summary_folder, exp_ids, values)
    for name, means in per_seed_means(experiments).items():
        write_seed_comparison_csv(results_io.compare_path(summary_folder, SCORES[name].key),
                                  comparisons.compare_seeds(means))
    plot_tests(vis_folder, {name: means for name, means in seed_means(values).items() if means})
    band_curves = {key: [experiment.curves[key] for experiment in experiments.values() if experiment.curves.get(key)]
                   for key in TASKS if TASKS[key].curve}
    plot_curves(vis_folder, band_curves, plot_band_curves)
    first = exp_ids[0]
    pairs, reliability, agreement = statistics[first]
    if report and pairs:  # the first experiment's, for the report (not its pair matrices: see plot_pair_matrices)
        plot_comparisons(vis_folder, pairs, reliability, agreement)
    if report:
        plot_sanity(vis_folder, results_io.exp_dir(results_dir, first), experiments[first])
    best, floor = seed_marks(statistics)
    summary = seeds_summary(exp_ids, experiments, values, tiny_clean_score, best, floor)
    summary.notes += seed_statistics_notes(summary_folder, statistics)
    if best:
        summary.notes.append(f"{SIGNIFICANTLY_BEST}: better than every other source on that score in every "
                             f"experiment ({comparisons.TEST_NAMES[test]} on each experiment's images, p "
                             f"Holm-adjusted over the score's pairs < {comparisons.ALPHA})")
    if floor:
        summary.notes.append(floor_note(" in at least one experiment, by the same test"))
    summary.notes += score_notes(experiments.values())
    publish(summary, summary_folder, vis_folder, experiments,
            (f"{summary_id}: mean and 95% interval over {len(exp_ids)} experiments",
             results_io.exp_dir(results_dir, first), experiments[first],
             f"the images of {first}, the first of the {len(exp_ids)} experiments",
             (pairs, reliability, test)) if report else None, columns)


# The options that say which data a run saw and at what size: experiments that differ in one of them are not seeds
# of one configuration (the test images themselves are compared too).
DATA_OPTIONS = ("dataset_train", "dataset_val", "dataset_test", "class_nb", "train_prop", "released_split", "img_size",
                "sq_resizing", "crop_ratio")


def check_distinct_runs(experiments):
    """UserError where experiments ({exp id: Experiment}) are not independent runs of one configuration, which
    is what a mean over seeds assumes: two hold the same run of a model (one folder is a copy of the other), two
    runs of a model have identical run-defining options, seed included (trained twice, not two seeds), or two
    runs of a model saw other data, image size or test images. Decided before anything is written."""
    refusal = same_run_refusal({exp_id: experiment.run_ids for exp_id, experiment in experiments.items()})
    if refusal is not None:
        raise UserError(refusal)
    scanned = {}  # the test images of each test folder, listed once: every model of an experiment shares one

    def test_images(options):
        folder = (options.data_dir, options.dataset_test, options.class_nb)
        if folder not in scanned:
            scanned[folder] = run_test_images(options)
        return scanned[folder]
    runs = {exp_id: {model_id: (run_signature(landed.args), test_images(landed.args))
                     for model_id, landed in experiment.landed.items()} for exp_id, experiment in experiments.items()}
    refusal = seed_refusal(runs)
    if refusal is not None:
        raise UserError(refusal)


def same_run_refusal(run_ids):
    """Why experiments are copies rather than seeds, or None. run_ids: {exp id: {model_id: run id}}; a run id
    found in two experiments is one run counted twice (a copied folder)."""
    seen = {}
    for exp_id, runs in run_ids.items():
        for model_id, run_id in sorted(runs.items()):
            if run_id in seen:
                return (f"{seen[run_id]} and {exp_id} hold the same run of '{model_id}' (run {run_id}): one folder "
                        f"is a copy of the other, not another seed; give each seed's experiment once")
            seen[run_id] = exp_id
    return None


def run_test_images(options):
    """The test images of a run's options: their paths in the test folder, in test order."""
    folder = os.path.join(options.data_dir, options.dataset_test)
    return tuple(os.path.relpath(path, folder) for path, _ in test_folder_samples(options))


def seed_refusal(runs):
    """Why experiments are not seeds of one configuration, or None. runs: {exp id: {model_id: (its run signature
    (runs.args.run_signature), its test images)}}. Each model present in several experiments is compared with
    its run in the first of them: identical signatures, but for exp_id, are one configuration trained twice;
    a DATA_OPTIONS value or test images that differ are other data."""
    first_run = {}
    for exp_id, models in runs.items():
        for model_id, (signature, images) in sorted(models.items()):
            if model_id not in first_run:
                first_run[model_id] = (exp_id, signature, images)
                continue
            first, first_signature, first_images = first_run[model_id]
            if {**signature, "exp_id": None} == {**first_signature, "exp_id": None}:
                return (f"{first} and {exp_id} hold runs of '{model_id}' with identical options, seed "
                        f"{signature.get('seed')} included: one configuration trained twice, not two seeds; train "
                        f"one of them with another --seed")
            differ = [f"--{name} {first_signature.get(name)} / {signature.get(name)}" for name in DATA_OPTIONS
                      if first_signature.get(name) != signature.get(name)]
            if images != first_images:
                differ.append(f"test images ({len(first_images)} / {len(images)} files, not the same)")
            if differ:
                return (f"{first} and {exp_id} are not seeds of one configuration: their runs of '{model_id}' differ "
                        f"in {', '.join(differ)}; summarise them apart")
    return None


def per_seed_means(experiments):
    """{score name: {source: {exp id: the score's mean over the experiment's images}}}."""
    means = {}
    for exp_id, experiment in experiments.items():
        for source, row in experiment.rows.items():
            for name in SCORES:
                if name in row:
                    means.setdefault(name, {}).setdefault(source, {})[exp_id] = defined_mean(row[name])
    return means


def seed_statistics_notes(summary_folder, statistics):
    """The lines under the seeds' table: where the by-seed comparisons are, and each score's alpha in each
    experiment. statistics: {exp id: experiment_statistics result}."""
    notes = [f"every two sources paired by seed (the mean per-seed difference and its t-interval; Welch on the "
             f"per-seed means beside it): compare_<score key>.csv in {summary_folder}; per image, in each "
             f"experiment's folder"]
    for name in SCORES:
        alphas = [(exp_id, reliability[name]) for exp_id, (_, reliability, _) in statistics.items()
                  if name in reliability]
        if alphas:
            mean_alpha = np.mean([item.alpha for _, item in alphas])
            notes.append(f"{name}: alpha " + ", ".join(
                f"{exp_id} {fmt_number(item.alpha)} [{fmt_number(item.low)}, {fmt_number(item.high)}]"
                for exp_id, item in alphas) + f" ({comparisons.reliability_words(mean_alpha)}, by the mean)")
    return notes


def seed_means(values):
    """{score name: {source: per-experiment means (E,)}} of the sources with values, from seed_values."""
    return {name: {source: np.array(source_values[name]) for source, source_values in values.items()
                   if source_values[name]} for name in SCORES}


def write_seeds_csvs(summary_folder, exp_ids, values):
    """summary.csv (each column's mean, interval and count over the experiments) and, per score, the
    per-experiment means (attMetrics_<key>_seeds.csv)."""
    rows = []
    for source, source_values in sorted(values.items()):
        row = [source]
        for column in COLUMNS:
            mean, half = mean_ci(source_values[column]) if source_values[column] else (float("nan"), float("nan"))
            row += [mean, half, len(source_values[column])]
        rows.append(row)
    header = ["model_id"] + [f"{column.replace(' ', '_')}_{part}" for column in COLUMNS
                             for part in ("mean", "ci95", "n")]
    files.atomic_write_csv(results_io.seeds_summary_path(summary_folder), header, rows)
    for name, means in seed_means(values).items():
        if means:
            files.atomic_write_csv(results_io.summary_paths(summary_folder, SCORES[name].key)["seeds"],
                                        ["model_id"] + list(exp_ids),
                                        [[source] + list(source_means)
                                         for source, source_means in sorted(means.items())])
