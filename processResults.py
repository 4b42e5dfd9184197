"""DAUC / IAUC (and every score of metrics/scores.py) from the saved files, with tests, plots and a table.

    python3 processResults.py --exp_id CUB
    python3 processResults.py --exp_id synth_s1 synth_s2 synth_s3

One exp_id: reads <results_dir>/<exp_id>/attMetr<key>_<model_id>*.npy (the
sets of the perturbation tasks, metrics/tasks.py) and the test CSVs; writes,
for each score, attMetrics_<key>.csv (model_id,mean) and attMetrics_<key>_pop.csv
(model_id, then every image's value) there (key Del: DAUC, Add: IAUC), the
Welch t-test matrices and mean curves to vis/<exp_id>/, and prints each
model's numbers with a 95% interval over the test images. Where the test set
has ground-truth part masks (<dataset_test>_masks, the synthetic data), it also
reports the share of saliency inside the part and the pointing game.

Several exp_ids (one per seed): each model's numbers are first computed per
experiment, then averaged over the experiments, with a 95% t-interval over
them; the Welch t-tests compare models on their per-experiment means, and the
mean curves carry a band (the same interval, step by step). Written to
<results_dir>/<exp ids joined by +>/summary.csv and vis/<the same name>/.

Each column of the table says whether lower or higher is better.
"""
import argparse
import dataclasses
import json
import os
import time
from typing import Optional

import numpy as np
import torch
from scipy import stats

import results_io
import runs
from errors import UserError, run_main
from metrics.attention import sparsity
from metrics.localisation import LOCALISATION_SCORES, localisation_scores
from metrics.saliency import POST_HOC_NAMES, saliencies_from_maps
from metrics.scores import SCORES
from metrics.tasks import TASKS
from options import REPO_ROOT, resolve_path, str2bool


def landed_runs(exp_folder):
    """{model_id: runs.LandedRun} of every model with a test CSV in exp_folder."""
    return {model_id: runs.LandedRun(exp_folder, model_id) for model_id in results_io.tested_model_ids(exp_folder)}


def load_task_sets(exp_folder, task, landed):
    """({source id: {array name: array}}, notes) for every set of a perturbation task (metrics/tasks.py) in
    exp_folder, where the source is a model id (or '<model_id>-<method>'). Every set must come from the run
    that made the model's landed files (landed: {model_id: LandedRun}). A set without its .json (its landing
    was interrupted) is left out, with a note naming the command that finishes it. An array missing from a
    set (one that an older version did not write) is missing from its dict."""
    results, notes = {}, []
    for source, path in results_io.task_file_names(exp_folder, task.key).items():
        model_id, _ = results_io.parse_source_id(source, POST_HOC_NAMES)
        if model_id not in landed:
            raise UserError(f"{path} has no model beside it: '{model_id}' has no finished run in {exp_folder} "
                            f"(train it with {runs.train_command(None, model_id)}, or delete the file)")
        model = landed[model_id]
        remake = model.curves_command(task.key, source)
        paths = results_io.att_metrics_paths(exp_folder, source, task.key)
        if not os.path.exists(paths["meta"]):
            notes.append(f"the {task.description} of {source} are incomplete ({path} has no .json beside "
                         f"it): run {remake} to finish them")
            continue
        try:
            with open(paths["meta"]) as file:
                run_id = json.load(file)["run_id"]
        except (OSError, ValueError, KeyError):
            raise UserError(f"{path} has no readable metadata ({paths['meta']}): remake it with {remake}") from None
        model.check_run_id(path, run_id, remake)
        arrays = {name: results_io.read_array(array_path, remake) for name, array_path in paths.items()
                  if name != "meta" and os.path.exists(array_path)}
        if len({len(array) for array in arrays.values()}) != 1:
            raise UserError(f"the files of the {task.description} of {source} ({path} and the files beside it) "
                            f"hold different image counts: remake them with {remake}")
        curves = arrays.get("curves")
        if task.curve is not None and (curves.ndim != 3 or curves.shape[2] != 2):
            raise UserError(f"{path} does not hold curves (shape {curves.shape}): remake it with {remake}")
        results[source] = arrays
    return results, notes


def score_values(sets, landed):
    """({score name: {source: per-image values (N,)}}, {score name: {source: per-image denominators (N,)}} for
    the ratio scores, notes) of every score of metrics/scores.py, from the sets of its task (sets: {task key:
    load_task_sets result}). A set that lacks an array a score needs gets a note with the command that
    computes it again, instead of a value."""
    values, denominators, notes = {name: {} for name in SCORES}, {}, []
    for score in SCORES.values():
        for source, arrays in sets[score.task].items():
            missing = [name for name in score.needs if name not in arrays]
            if missing:
                model_id = results_io.parse_source_id(source, POST_HOC_NAMES)[0]
                notes.append(f"{score.name} of {source}: its {TASKS[score.task].description} have no "
                             f"{', '.join(missing)} (an older version wrote them): run "
                             f"{landed[model_id].curves_command(score.task, source)} to compute them again")
                continue
            values[score.name][source] = score.per_image(arrays)
            if score.denominator is not None:
                denominators.setdefault(score.name, {})[source] = score.denominator(arrays)
    return values, denominators, notes


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


def write_score_csvs(exp_folder, score, aucs):
    """attMetrics_<key>.csv (the mean, and the median for a ratio score) and attMetrics_<key>_pop.csv (every
    image's value) of a score."""
    paths = results_io.summary_paths(exp_folder, score.key)
    ratio = score.denominator is not None  # a ratio score's mean can hang on one image: its median goes beside it
    rows = [[model_id, float(values.mean())] + ([float(np.median(values))] if ratio else [])
            for model_id, values in sorted(aucs.items())]
    results_io.atomic_write_csv(paths["mean"], ["model_id", "mean"] + (["median"] if ratio else []), rows)
    width = max(len(values) for values in aucs.values())
    pop_rows = [[model_id] + list(values) for model_id, values in sorted(aucs.items())]
    results_io.atomic_write_csv(paths["pop"], ["model_id"] + [f"img_{i}" for i in range(width)], pop_rows)


def plot_ttest(path, score, model_ids, p_values):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.2 * len(model_ids) + 3, 1.0 * len(model_ids) + 2))
    image = ax.imshow(p_values, cmap="viridis_r", vmin=0, vmax=1)
    ax.set_xticks(range(len(model_ids)), model_ids, rotation=45, ha="right")
    ax.set_yticks(range(len(model_ids)), model_ids)
    for i in range(len(model_ids)):
        for j in range(len(model_ids)):
            color = "white" if p_values[i, j] < .5 else "black"
            ax.text(j, i, f"{p_values[i, j]:.2g}", ha="center", va="center", color=color)
    ax.set_title(f"Welch t-test p-values, {score.name}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_mean_curves(path, metric, curves_per_source):
    """The mean curve of each source (curves_per_source: {source: (N, T, 2)}) of a CurveMetric, its mean AUC in
    the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for model_id, curves in sorted(curves_per_source.items()):
        x = metric.x_axis(curves[0, :, 0])
        mean_auc = np.mean([metric.auc(curve) for curve in curves])
        ax.plot(x, curves[:, :, 1].mean(axis=0), label=f"{model_id} ({mean_auc:.3f})")
    ax.set_xlabel(f"share of the map {metric.perturbed}")
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {metric.name} curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def test_values(landed):
    """The model's test CSV row as floats (the run id left out)."""
    return {key: float(value) for key, value in landed.test.items() if key != "run_id"}


def localisation(config, samples, saliencies, indices):
    """({score name: mean over the images} of metrics/localisation.py, uniform-saliency energy) of saliencies
    (h, w) of the test images samples[i] for i in `indices`, when the test set has part masks (None otherwise)."""
    from load_data import load_mask_array
    from runtime import data_config
    test_folder = os.path.join(config.data_dir, config.dataset_test)
    if not os.path.isdir(results_io.mask_folder(test_folder)):
        return None
    geometry = data_config(config)[1]
    scores, areas = {name: [] for name in LOCALISATION_SCORES}, []
    for index, saliency in zip(indices, saliencies):
        mask = load_mask_array(results_io.part_mask_path(test_folder, samples[index][0]), geometry)
        for name, value in localisation_scores(saliency, mask).items():
            scores[name].append(value)
        areas.append(mask.mean())
    return {name: float(np.mean(values)) for name, values in scores.items()}, float(np.mean(areas))


def test_folder_samples(config):
    from load_data import scan_test_folder
    return scan_test_folder(config.data_dir, config.dataset_test, config.class_nb)


def own_saliencies(landed):
    """(test samples, the saliency (h, w) of every test image) from a model's saved maps and norms."""
    from models.heads import head_class
    att_maps = results_io.read_array(landed.paths["att_maps"], landed.remake)
    norms = results_io.read_array(landed.paths["norm"], landed.remake)
    samples = test_folder_samples(landed.args)
    if len(samples) != len(att_maps):
        raise UserError(f"the test folder {os.path.join(landed.args.data_dir, landed.args.dataset_test)} holds "
                        f"{len(samples)} images but {landed.paths['att_maps']} has maps of {len(att_maps)}: remake "
                        f"the model with {landed.remake}")
    saliencies = saliencies_from_maps(att_maps, norms, head_class(landed.args.head), range(len(att_maps)))
    return samples, [saliency.numpy() for saliency in saliencies]


def post_hoc_saliencies(exp_folder, landed, source):
    """(test indices of the evaluated images, their maps (N, h, w)) of a post-hoc saliency
    '<model_id>-<method>', checked to come from the model's landed run."""
    remake = landed.curves_command(next(iter(TASKS)), source)
    paths = results_io.post_hoc_maps_paths(exp_folder, source)
    try:
        with open(paths["meta"]) as file:
            meta = json.load(file)
    except (OSError, ValueError):
        raise UserError(f"the maps of {source} ({paths['maps']}) or their metadata are missing or unreadable: "
                        f"remake them with {remake}") from None
    landed.check_run_id(paths["maps"], meta.get("run_id"), remake)
    maps = results_io.read_array(paths["maps"], remake)
    if maps.ndim != 3 or len(maps) != len(meta["images"]):
        raise UserError(f"{paths['maps']} does not hold one map per evaluated image: remake it with {remake}")
    return meta["images"], maps


def source_saliencies(exp_folder, landed, source):
    """{test index: saliency (h, w)} of a source: a model's own maps (every test image) or a post-hoc one's
    (the evaluated images). landed: {model_id: runs.LandedRun}."""
    model_id, method = results_io.parse_source_id(source, POST_HOC_NAMES)
    if method is None:
        return dict(enumerate(own_saliencies(landed[model_id])[1]))
    return dict(zip(*post_hoc_saliencies(exp_folder, landed[model_id], source)))


def own_map_row(landed):
    """A model's row from its test CSV and saved maps (all test images)."""
    samples, saliencies = own_saliencies(landed)
    values = test_values(landed)
    return {"accuracy": values.get("accuracy"), "sparsity": values.get("sparsity"),
            "local": localisation(landed.args, samples, saliencies, range(len(saliencies)))}


def post_hoc_row(exp_folder, landed, source):
    """The row of a post-hoc saliency '<model_id>-<method>': the model's accuracy; sparsity and localisation
    scores of the saved post-hoc maps of the evaluated images (each map its own weight, norm 1)."""
    images, maps = post_hoc_saliencies(exp_folder, landed, source)
    scaled = torch.from_numpy(maps).float()[:, None]
    return {"accuracy": test_values(landed).get("accuracy"),
            "sparsity": float(sparsity(scaled, torch.ones_like(scaled)).mean()),
            "local": localisation(landed.args, test_folder_samples(landed.args), maps, images)}


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


def incomplete_models(exp_folder, landed):
    """One line per model of exp_folder whose files were being replaced when its run stopped (it has no test
    CSV, so it is not in landed), with the command that finishes it."""
    notes = []
    for name in runs.interrupted_stages(exp_folder):
        if results_io.parse_curve_stage_name(name) is None and name not in landed:
            config = runs.staged_config(exp_folder, name)
            notes.append(f"model '{name}' is incomplete (its files were being replaced when its run stopped): "
                         f"run {runs.train_command(None, name, config=config)} to finish it")
    return notes


@dataclasses.dataclass
class Experiment:
    """What processResults reads of one experiment. rows: {source: {column: value}} (the scores of
    metrics/scores.py are arrays of per-image values, absent without their task's set; the localisation scores
    are present where the test set has part masks); curves: {curve task key: {source: (N, T, 2)}};
    uniform_energy: the energy in part of a uniform saliency, or None; run_ids: {model_id: run id} of the runs
    summarised; incomplete: notes of incomplete sets; not_computed: notes of the scores a source has no set for,
    with the command that computes them; sets: {task key: {source: {array name: array}}} as read; landed:
    {model_id: runs.LandedRun}; denominators: {ratio score name: {source: per-image denominators}}."""
    rows: dict
    curves: dict
    uniform_energy: Optional[float]
    run_ids: dict
    incomplete: list
    not_computed: list
    sets: dict
    landed: dict
    denominators: dict


def experiment_rows(exp_folder):
    """Every model of one experiment, and every post-hoc saliency of a model ('<model_id>-<method>'), as an
    Experiment."""
    landed = landed_runs(exp_folder)
    incomplete = incomplete_models(exp_folder, landed)
    sets = {}
    for key, task in TASKS.items():
        sets[key], notes = load_task_sets(exp_folder, task, landed)
        incomplete += notes
    values, denominators, notes = score_values(sets, landed)
    incomplete += notes
    sources = sorted(set(landed) | {source for key in TASKS for source in sets[key]})
    rows, uniform_energy = {}, None
    for source in sources:
        model_id, method = results_io.parse_source_id(source, POST_HOC_NAMES)
        base = own_map_row(landed[model_id]) if method is None else post_hoc_row(exp_folder, landed[model_id], source)
        row = {"accuracy": base["accuracy"], "sparsity": base["sparsity"]}
        for name, per_source in values.items():
            if source in per_source:
                row[name] = per_source[source]
        if base["local"] is not None:
            scores, uniform_energy = base["local"]
            row.update(scores)
        rows[source] = row
    curves = {key: {source: arrays["curves"] for source, arrays in sets[key].items()}
              for key, task in TASKS.items() if task.curve is not None}
    return Experiment(rows, curves, uniform_energy, {model_id: run.run_id for model_id, run in landed.items()},
                      incomplete, not_computed_notes(exp_folder, sources, landed), sets, landed, denominators)


def not_computed_notes(exp_folder, sources, landed):
    """One line per source and task that has no files of it at all: the scores it would give and the command
    that computes them."""
    notes = []
    for key in TASKS:
        present = results_io.task_file_names(exp_folder, key)
        names = ", ".join(name for name, score in SCORES.items() if score.task == key)
        for source in sources:
            if source not in present and names:
                model_id = results_io.parse_source_id(source, POST_HOC_NAMES)[0]
                notes.append(f"{names} of {source}: run {landed[model_id].curves_command(key, source)}")
    return notes


def write_summary_runs(folders, experiments):
    """summary_runs.json in each folder: the runs (per experiment, model id -> run id) the summaries and plots
    beside it were made from, and when. Only processResults writes the summaries; this says what they show."""
    record = {"written": time.strftime("%Y-%m-%d %H:%M:%S"),
              "runs": {exp_id: experiment.run_ids for exp_id, experiment in experiments.items()}}
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        results_io.atomic_write_json(results_io.summary_runs_path(folder), record)


def print_incomplete(experiments):
    for exp_id, experiment in experiments.items():
        for note in experiment.not_computed:
            print(f"not computed in {exp_id}: {note}")
        for note in experiment.incomplete:
            print(f"incomplete in {exp_id}: {note}")


COLUMNS = ("accuracy", "sparsity", *SCORES, *LOCALISATION_SCORES)


def directions():
    """'DAUC ↓: lower is better; IAUC ↑: higher is better...' from the table of scores."""
    return "; ".join(f"{score.name} {score.arrow}: {score.direction}" for score in SCORES.values()) + "."


def print_table(header, rows):
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def main(argv=None):
    opts = build_parser().parse_args(argv)
    run_main(lambda: summarise(opts), opts.debug)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser


def summarise(opts):
    results_dir, vis_dir = resolve_path(opts.results_dir), resolve_path(opts.vis_dir)
    for exp_id in opts.exp_id:
        exp_folder = results_io.exp_dir(results_dir, exp_id)
        if not os.path.isdir(exp_folder):
            raise UserError(f"no results folder {exp_folder}: train a model first (./train.sh MODEL_ID)")
        if not results_io.tested_model_ids(exp_folder):
            raise UserError(f"no results in {exp_folder}: run ./train.sh MODEL_ID, then ./get_dauc_scores.sh "
                            f"MODEL_ID and ./get_iauc_scores.sh MODEL_ID")
    if len(opts.exp_id) == 1:
        summarise_experiment(results_dir, vis_dir, opts.exp_id[0], opts.report, opts.tiny_clean_score)
    else:
        summarise_seeds(results_dir, vis_dir, opts.exp_id, opts.report, opts.tiny_clean_score)


def write_experiment_csvs(exp_folder, rows):
    """attMetrics_<key>.csv and _pop.csv of every score of one experiment; returns {score name: {model_id:
    per-image values}} for the scores that have values."""
    written = {}
    for name, score in SCORES.items():
        per_image = {model_id: row[name] for model_id, row in rows.items() if name in row}
        if per_image:
            write_score_csvs(exp_folder, score, per_image)
            written[name] = per_image
    return written


def summarise_experiment(results_dir, vis_dir, exp_id, report=False, tiny_clean_score=1e-3):
    """One experiment: CSVs, plots and a table with 95% intervals over the test images (and the HTML report).
    tiny_clean_score: the clean scores below it are counted, per source, in a note on AD and ADD."""
    exp_folder, vis_folder = results_io.exp_dir(results_dir, exp_id), results_io.exp_dir(vis_dir, exp_id)
    experiment = experiment_rows(exp_folder)
    rows, curves, uniform_energy = experiment.rows, experiment.curves, experiment.uniform_energy
    for name, per_image in write_experiment_csvs(exp_folder, rows).items():
        os.makedirs(vis_folder, exist_ok=True)
        plot_ttest(os.path.join(vis_folder, results_io.ttest_plot_name(SCORES[name].key)), SCORES[name],
                   *welch_matrix(per_image))
    for key, task_curves in curves.items():
        if task_curves:
            os.makedirs(vis_folder, exist_ok=True)
            plot_mean_curves(os.path.join(vis_folder, results_io.curves_plot_name(key)), TASKS[key].curve,
                             task_curves)
    header = [("model_id", ""), ("accuracy", ""), ("sparsity", "")]
    for name, score in SCORES.items():
        header += [(name, score.arrow)] + ([(f"{name} median", score.arrow)] if score.denominator else [])
    header += [("n", ""), *((name, "") for name in LOCALISATION_SCORES)]
    table = []
    for model_id, row in sorted(rows.items()):
        cells = [(fmt(row["accuracy"]), row["accuracy"]), (fmt(row["sparsity"]), row["sparsity"])]
        for name, score in SCORES.items():
            mean_half = mean_ci(row[name]) if name in row else None
            cells.append((fmt(*mean_half), mean_half[0]) if mean_half else ("-", None))
            if score.denominator:
                median = float(np.median(row[name])) if name in row else None
                cells.append((fmt(median), median))
        counts = sorted({len(row[name]) for name in SCORES if name in row})
        cells.append(("/".join(map(str, counts)) or "-", counts[0] if counts else None))
        cells += [(fmt(row.get(name)), row.get(name)) for name in LOCALISATION_SCORES]
        table.append((model_id, cells))
    print("mean and 95% interval over the test images (n: images per score; several counts when they differ)")
    print_table(header_names(header), [[model_id, *(text for text, _ in cells)] for model_id, cells in table])
    print(directions())
    notes = tiny_denominator_notes(experiment.denominators, tiny_clean_score) + chance_note(uniform_energy)
    for note in notes:
        print(note)
    if report:
        write_html_report(vis_folder, f"{exp_id}", header, table, notes, exp_folder, experiment)
    write_summary_runs([exp_folder] + ([vis_folder] if os.path.isdir(vis_folder) else []), {exp_id: experiment})
    if any(curves.values()):
        print(f"CSV files in {exp_folder}, plots in {vis_folder}")
    print_incomplete({exp_id: experiment})


def seed_values(per_experiment):
    """{model_id: {column: per-experiment values (in experiment order)}} from experiment_rows rows; a score's
    value (DAUC, IAUC...) is the experiment's mean over images. A model missing from an experiment has fewer values."""
    values = {}
    for rows in per_experiment:
        for model_id, row in rows.items():
            model_values = values.setdefault(model_id, {column: [] for column in COLUMNS})
            for column in COLUMNS:
                if row.get(column) is not None:
                    model_values[column].append(float(np.mean(row[column])))
    return values


def header_names(header):
    """The printed header: each column's name with its direction arrow."""
    return [f"{name} {arrow}" if arrow else name for name, arrow in header]


def chance_note(uniform_energy):
    return [] if uniform_energy is None else [
        f"energy in part of a uniform saliency map (chance): {uniform_energy:.3f}"]


PLOT_CAPTIONS = [*((results_io.curves_plot_name(key), f"mean {task.curve.name} curve") for key, task in TASKS.items()
                   if task.curve is not None),
                 *((results_io.ttest_plot_name(score.key), f"Welch t-test p-values, {name}")
                   for name, score in SCORES.items())]


def write_html_report(vis_folder, title, header, table, notes, exp_folder, experiment, gallery_note=None):
    """vis_folder/report.html (report/): the table, the plots in vis_folder, and the gallery of one
    experiment's evaluated test images; prints its path."""
    from report.build import Table, write_report
    from report.gallery import experiment_gallery
    sources = sorted({source for per_source in experiment.sets.values() for source in per_source})
    saliencies = {source: source_saliencies(exp_folder, experiment.landed, source) for source in sources}
    gallery = experiment_gallery(exp_folder, experiment.sets, experiment.landed, saliencies)
    if gallery_note:
        gallery.note = gallery_note + ("; " + gallery.note if gallery.note else "")
    plots = [(caption, name) for name, caption in PLOT_CAPTIONS if os.path.exists(os.path.join(vis_folder, name))]
    path = write_report(vis_folder, title, Table(header, table, notes + [directions()]), plots, gallery)
    print(f"report of {len(gallery.images)} test images x {len(gallery.sources)} sources: {path}")


def summarise_seeds(results_dir, vis_dir, exp_ids, report=False, tiny_clean_score=1e-3):
    """Several experiments (seeds): per-model means over them, 95% t-intervals, Welch tests on the
    per-experiment means, mean curves with a band (tiny_clean_score: as summarise_experiment's)."""
    summary_id = "+".join(exp_ids)
    summary_folder, vis_folder = results_io.exp_dir(results_dir, summary_id), results_io.exp_dir(vis_dir, summary_id)
    experiments = {exp_id: experiment_rows(results_io.exp_dir(results_dir, exp_id)) for exp_id in exp_ids}
    per_experiment = list(experiments.values())
    for exp_id, experiment in experiments.items():
        write_experiment_csvs(results_io.exp_dir(results_dir, exp_id), experiment.rows)
        write_summary_runs([results_io.exp_dir(results_dir, exp_id)], {exp_id: experiment})
    values = seed_values([experiment.rows for experiment in per_experiment])
    os.makedirs(summary_folder, exist_ok=True)
    csv_rows = []
    for model_id, model_values in sorted(values.items()):
        row = [model_id]
        for column in COLUMNS:
            mean, half = mean_ci(model_values[column]) if model_values[column] else (float("nan"), float("nan"))
            row += [mean, half, len(model_values[column])]
        csv_rows.append(row)
    header = ["model_id"] + [f"{column.replace(' ', '_')}_{part}" for column in COLUMNS
                             for part in ("mean", "ci95", "n")]
    results_io.atomic_write_csv(results_io.seeds_summary_path(summary_folder), header, csv_rows)
    for name, score in SCORES.items():
        means = {model_id: np.array(model_values[name]) for model_id, model_values in values.items()
                 if model_values[name]}
        if not means:
            continue
        results_io.atomic_write_csv(results_io.summary_paths(summary_folder, score.key)["seeds"],
                                    ["model_id"] + list(exp_ids),
                                    [[model_id] + list(model_means) for model_id, model_means in sorted(means.items())])
        os.makedirs(vis_folder, exist_ok=True)
        plot_ttest(os.path.join(vis_folder, results_io.ttest_plot_name(score.key)), score, *welch_matrix(means))
    for key, task in TASKS.items():
        curves_per_experiment = [experiment.curves[key] for experiment in per_experiment if key in experiment.curves]
        if task.curve is not None and any(curves_per_experiment):
            os.makedirs(vis_folder, exist_ok=True)
            plot_band_curves(os.path.join(vis_folder, results_io.curves_plot_name(key)), task.curve,
                             curves_per_experiment)
    table = []
    for model_id, model_values in sorted(values.items()):
        cells = []
        for column in COLUMNS:
            mean_half = mean_ci(model_values[column]) if model_values[column] else None
            cells.append((fmt(*mean_half), mean_half[0]) if mean_half else ("-", None))
        experiment_nb = max(len(v) for v in model_values.values())
        table.append((model_id, cells + [(str(experiment_nb), experiment_nb)]))
    header = [("model_id", ""), *((column, SCORES[column].arrow if column in SCORES else "") for column in COLUMNS),
              ("n", "")]
    print(f"mean and 95% interval over {len(exp_ids)} experiments ({', '.join(exp_ids)})")
    print_table(header_names(header), [[model_id, *(text for text, _ in cells)] for model_id, cells in table])
    print(directions())
    uniform = [experiment.uniform_energy for experiment in per_experiment if experiment.uniform_energy is not None]
    notes = [f"{exp_id}, {note}" for exp_id, experiment in experiments.items()
             for note in tiny_denominator_notes(experiment.denominators, tiny_clean_score)]
    notes += chance_note(np.mean(uniform) if uniform else None)
    for note in notes:
        print(note)
    if report:
        write_html_report(vis_folder, f"{summary_id}: mean and 95% interval over {len(exp_ids)} experiments",
                          header, table, notes,
                          results_io.exp_dir(results_dir, exp_ids[0]), experiments[exp_ids[0]],
                          gallery_note=f"the images of {exp_ids[0]}, the first of the {len(exp_ids)} experiments")
    write_summary_runs([summary_folder] + ([vis_folder] if os.path.isdir(vis_folder) else []), experiments)
    print(f"CSV files in {summary_folder}, plots in {vis_folder}")
    print_incomplete(experiments)


def plot_band_curves(path, metric, curves_per_experiment):
    """Mean curve of each model over experiments (each experiment's mean curve first), with a 95% band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    model_ids = sorted(set().union(*curves_per_experiment))
    for model_id in model_ids:
        experiment_curves = [curves[model_id] for curves in curves_per_experiment if model_id in curves]
        steps = {curves.shape[1] for curves in experiment_curves}
        if len(steps) != 1:
            raise UserError(f"the curves of '{model_id}' have different step counts across experiments ({steps}): "
                            f"compute them with the same options")
        means = np.stack([curves[:, :, 1].mean(axis=0) for curves in experiment_curves])  # (experiments, T)
        x = metric.x_axis(experiment_curves[0][0, :, 0])
        center = means.mean(axis=0)
        line, = ax.plot(x, center, label=f"{model_id} (n={len(means)})")
        if len(means) > 1:
            half = t_half_width(means, axis=0)
            ax.fill_between(x, center - half, center + half, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(f"share of the map {metric.perturbed}")
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {metric.name} curve, 95% band over experiments")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
