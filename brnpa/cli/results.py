"""Every score (brnpa/metrics/scores.py) of the saved sets, with paired tests, reliability, plots and a table.

    python3 processResults.py --exp_id CUB
    python3 processResults.py --exp_id synth_s1 synth_s2 synth_s3

One exp_id: reads <results_dir>/<exp_id>/attMetr<key>_<source>*.npy (the sets of the perturbation tasks,
brnpa/metrics/tasks.py) and the test CSVs, and writes there, for each score, attMetrics_<key>.csv (model_id, mean)
and attMetrics_<key>_pop.csv (model_id, then every image's value, columns img_<test index>), compare_<key>.csv
(every pair of sources on the images both scored: Wilcoxon signed-rank test, Holm-adjusted, median paired
difference with its bootstrap interval, rank-biserial effect size), metric_reliability.csv (Krippendorff's
alpha of each score) and scores_long.csv (every per-image value: image, model, source, score, value); to
<vis_dir>/<exp_id>/ the mean curves, the critical-difference diagrams cd_<key>.png, the p-value matrices and the
sanity plot. It prints each source's numbers with a 95% interval over the test
images, in groups of columns that fit 160 characters (or the --columns chosen). Where the test set has part
masks (<dataset_test>_masks, the synthetic data), it also reports the share of saliency inside the part and
the pointing game.

Several exp_ids (one per seed, independent runs of one configuration): each source's numbers are first
computed per experiment, then averaged over the experiments, with a 95% t-interval over them; sources are
compared by seed (compare_<key>.csv) and with Welch tests on their per-experiment means; the mean curves carry
a band. Written to <results_dir>/<exp ids joined by +>/summary.csv and vis/<the same name>/.

Each column of the table says whether lower or higher is better.
"""
import math
import os

from brnpa.core.errors import UserError, run_main
from brnpa.core.options import REPO_ROOT, HelpFormatter, OneLineParser, resolve_path, str2bool

# The fewest bootstrap resamples of a 95% percentile interval: with fewer, no resample lies beyond its 2.5% or
# 97.5% point, and the interval is the range of a handful of draws.
MIN_RESAMPLES = 40


def main(argv=None):
    opts = build_parser().parse_args(argv)
    run_main(lambda: summarise(opts), opts.debug)


def build_parser():
    parser = OneLineParser(prog="processResults.py", description=__doc__, formatter_class=HelpFormatter,
                           allow_abbrev=False)
    parser.add_argument("--exp_id", nargs="+", default=["CUB"],
                        help="experiment(s) whose results are read; several are aggregated (e.g. one per seed)")
    parser.add_argument("--results_dir", default=os.path.join(REPO_ROOT, "results"), help="results root")
    parser.add_argument("--vis_dir", default=os.path.join(REPO_ROOT, "vis"), help="plots go to <vis_dir>/<exp_id>/")
    parser.add_argument("--report", type=str2bool, nargs="?", const=True, default=False,
                        help="also write <vis_dir>/<exp_id>/report.html: the table, the plots and every evaluated "
                             "test image's maps and curves, to open in a browser (offline)")
    parser.add_argument("--tiny_clean_score", type=float, default=1e-3,
                        help="AD and ADD divide by the clean image's score: the images whose clean score is below "
                             "this are counted in a note under the table (one of them can dominate a mean)")
    parser.add_argument("--test", choices=("wilcoxon", "welch"), default="wilcoxon",
                        help="the test of every two sources on a score, Holm-adjusted over the score's pairs: "
                             "wilcoxon, the Wilcoxon signed-rank test on the images both scored (paired); welch, "
                             "Welch's t-test on all the images of each (unpaired, as the authors' release); "
                             "compare_<key>.csv holds both p-values either way")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="resamples of each bootstrap interval (the median paired differences, "
                             f"Krippendorff's alpha), at least {MIN_RESAMPLES}")
    parser.add_argument("--columns", nargs="+", default=None, metavar="NAME",
                        help="print only these columns of the table, named as in its header without the arrow "
                             "(e.g. DAUC IAUC 'ROAD MoRF'); default: every column, in groups (faithfulness, single "
                             "step, sanity, localisation); the CSV files and the report hold every column either "
                             "way")
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser



def summarise(opts):
    """Check the experiments' folders, then summarise one experiment or several (brnpa/analysis/summary.py)."""
    from brnpa.analysis.summary import summarise_experiment, summarise_seeds  # here, so that --help needs no torch
    from brnpa.runs import results_io
    if opts.resamples < MIN_RESAMPLES:
        raise UserError(f"--resamples must be at least {MIN_RESAMPLES} (a 95% percentile interval leaves 2.5% of the "
                        f"resamples out on each side), got {opts.resamples}")
    if not (math.isfinite(opts.tiny_clean_score) and opts.tiny_clean_score >= 0):
        raise UserError(f"--tiny_clean_score must be a finite number, 0 or more (a softmax score), got "
                        f"{opts.tiny_clean_score}")
    repeated = sorted({exp_id for exp_id in opts.exp_id if opts.exp_id.count(exp_id) > 1})
    if repeated:
        raise UserError(f"--exp_id names {', '.join(repeated)} more than once: give each experiment once")
    results_dir, vis_dir = resolve_path(opts.results_dir), resolve_path(opts.vis_dir)
    for exp_id in opts.exp_id:
        exp_folder = results_io.exp_dir(results_dir, exp_id)
        if not os.path.isdir(exp_folder):
            raise UserError(f"no results folder {exp_folder}: train a model first (./train.sh MODEL_ID)")
        if not results_io.tested_model_ids(exp_folder):
            raise UserError(f"no results in {exp_folder}: run ./train.sh MODEL_ID, then ./get_dauc_scores.sh "
                            f"MODEL_ID and ./get_iauc_scores.sh MODEL_ID")
    if opts.columns is not None:
        from brnpa.analysis.summary import table_columns
        unknown = [name for name in opts.columns if name not in table_columns(len(opts.exp_id) > 1)]
        if unknown:
            raise UserError(f"--columns: no column {', '.join(repr(name) for name in unknown)}; the columns are "
                            f"{', '.join(table_columns(len(opts.exp_id) > 1))}")
    if len(opts.exp_id) == 1:
        summarise_experiment(results_dir, vis_dir, opts.exp_id[0], opts.report, opts.tiny_clean_score, opts.test,
                             opts.resamples, opts.columns)
    else:
        summarise_seeds(results_dir, vis_dir, opts.exp_id, opts.report, opts.tiny_clean_score, opts.test,
                        opts.resamples, opts.columns)
