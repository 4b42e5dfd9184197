"""DAUC / IAUC from the saved curves, with tests, plots and a summary table.

    python3 processResults.py --exp_id CUB
    python3 processResults.py --exp_id synth_s1 synth_s2 synth_s3

One exp_id: reads <results_dir>/<exp_id>/attMetr<Del|Add>_<model_id>.npy and
the test CSVs; writes attMetrics_<Del|Add>.csv (model_id,mean) and
attMetrics_<Del|Add>_pop.csv (model_id, then every image's AUC) there, the
Welch t-test matrices and mean curves to vis/<exp_id>/, and prints each
model's numbers with a 95% interval over the test images. Where the test set
has ground-truth part masks (<dataset_test>_masks, the synthetic data), it also
reports the share of saliency inside the part and the pointing game.

Several exp_ids (one per seed): each model's numbers are first computed per
experiment, then averaged over the experiments, with a 95% t-interval over
them; the Welch t-tests compare models on their per-experiment means, and the
mean curves carry a band (the same interval, step by step). Written to
<results_dir>/<exp ids joined by +>/summary.csv and vis/<the same name>/.

Lower DAUC is better; higher IAUC is better.
"""
import argparse
import glob
import json
import os
import re
import sys

import numpy as np
import torch
from scipy import stats

import results_io
import runs
from args import REPO_ROOT, resolve_path
from metrics.attention import sparsity
from metrics.auc import curve_auc, curve_x, energy_in_mask, pointing_game
from metrics.perturbation import saliency_map
from runtime import UserError

METRICS = ("Del", "Add")


def load_array(path, remake):
    """np.load with one clear error for a truncated or foreign file."""
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"cannot read {path} ({error}): remake it with {remake}") from None


def landed_runs(exp_folder):
    """{model_id: runs.LandedRun} of every model with a test CSV in exp_folder."""
    model_ids = {re.fullmatch(r"model(.+)_epoch\d+_test\.csv", os.path.basename(path)).group(1)
                 for path in glob.glob(os.path.join(exp_folder, "model*_epoch*_test.csv"))}
    return {model_id: runs.LandedRun(exp_folder, model_id) for model_id in sorted(model_ids)}


def load_aucs(exp_folder, metric, landed):
    """{source id: (per-image AUCs (N,), curves (N, T, 2))} for every attMetr<metric>_<source>.npy, where
    the source is a model id (or '<model_id>-<method>'). Every curve file must come from the run that
    made the model's landed files (landed: {model_id: LandedRun})."""
    results = {}
    pattern = re.compile(rf"attMetr{metric}_(.+)\.npy")
    for path in sorted(glob.glob(os.path.join(exp_folder, f"attMetr{metric}_*.npy"))):
        source = pattern.fullmatch(os.path.basename(path)).group(1)
        if source.endswith(("_imgInds", "_preds", "_targets")):
            continue
        model_id = source.split("-", 1)[0]
        if model_id not in landed:
            raise UserError(f"{path} has no model beside it: '{model_id}' has no finished run in {exp_folder} "
                            f"(train it with {runs.train_command(None, model_id)}, or delete the file)")
        model = landed[model_id]
        options = ("--att_metrics_post_hoc", source.split("-", 1)[1]) if "-" in source else ()
        remake = model.curves_command(metric, *options)
        meta_path = results_io.att_metrics_paths(exp_folder, source, metric)["meta"]
        try:
            with open(meta_path) as file:
                run_id = json.load(file)["run_id"]
        except (OSError, ValueError, KeyError):
            raise UserError(f"{path} has no readable metadata ({meta_path}): remake it with {remake}") from None
        if run_id != model.run_id:
            raise UserError(f"{path} comes from run {run_id} of '{model_id}' but the model's files are run "
                            f"{model.run_id}: remake the curves with {remake}")
        curves = load_array(path, remake)
        if curves.ndim != 3 or curves.shape[2] != 2:
            raise UserError(f"{path} does not hold curves (shape {curves.shape}): remake it with {remake}")
        results[source] = (np.array([curve_auc(curve, metric) for curve in curves]), curves)
    return results


def mean_ci(values):
    """Mean and half-width of the 95% t confidence interval (nan for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def welch_matrix(aucs):
    """p-values of Welch's t-test between every pair of models: (model ids, (M, M) array)."""
    model_ids = sorted(aucs)
    p_values = np.ones((len(model_ids), len(model_ids)))
    for i, first in enumerate(model_ids):
        for j, second in enumerate(model_ids):
            if i != j and len(aucs[first]) > 1 and len(aucs[second]) > 1:
                p_values[i, j] = stats.ttest_ind(aucs[first], aucs[second], equal_var=False).pvalue
    return model_ids, p_values


def write_auc_csvs(exp_folder, metric, aucs):
    rows = [[model_id, float(values.mean())] for model_id, values in sorted(aucs.items())]
    results_io.atomic_write_csv(os.path.join(exp_folder, f"attMetrics_{metric}.csv"), ["model_id", "mean"], rows)
    pop_path = os.path.join(exp_folder, f"attMetrics_{metric}_pop.csv")
    width = max(len(values) for values in aucs.values())
    pop_rows = [[model_id] + list(values) for model_id, values in sorted(aucs.items())]
    results_io.atomic_write_csv(pop_path, ["model_id"] + [f"img_{i}" for i in range(width)], pop_rows)


def plot_ttest(path, metric, model_ids, p_values):
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
    ax.set_title(f"Welch t-test p-values, {'DAUC' if metric == 'Del' else 'IAUC'}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_mean_curves(path, metric, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for model_id, (aucs, curves) in sorted(results.items()):
        x = curve_x(curves[0, :, 0], metric)
        ax.plot(x, curves[:, :, 1].mean(axis=0), label=f"{model_id} ({aucs.mean():.3f})")
    ax.set_xlabel("share of the map " + ("deleted" if metric == "Del" else "inserted"))
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {'deletion' if metric == 'Del' else 'insertion'} curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def test_values(landed):
    """The model's test CSV row as floats (the run id left out)."""
    return {key: float(value) for key, value in landed.test.items() if key != "run_id"}


def localisation(args, samples, saliencies, indices):
    """(energy in mask, pointing game, uniform-saliency energy) of saliencies (h, w) of the test images
    samples[i] for i in `indices`, when the test set has part masks (None otherwise)."""
    from load_data import load_mask_array
    mask_folder = os.path.join(args.data_dir, args.dataset_test + "_masks")
    if not os.path.isdir(mask_folder):
        return None
    test_folder = os.path.join(args.data_dir, args.dataset_test)
    energies, hits, areas = [], [], []
    for index, saliency in zip(indices, saliencies):
        mask = load_mask_array(os.path.join(mask_folder, os.path.relpath(samples[index][0], test_folder)), args)
        energies.append(energy_in_mask(saliency, mask))
        hits.append(pointing_game(saliency, mask))
        areas.append(mask.mean())
    return float(np.mean(energies)), float(np.mean(hits)), float(np.mean(areas))


def own_map_row(landed):
    """A model's row from its test CSV and saved maps (all test images)."""
    from load_data import scan_test_folder
    from models.net import model_type
    att_maps = load_array(landed.paths["att_maps"], landed.remake)
    norms = load_array(landed.paths["norm"], landed.remake)
    samples = scan_test_folder(landed.args)
    if len(samples) != len(att_maps):
        raise UserError(f"the test folder {os.path.join(landed.args.data_dir, landed.args.dataset_test)} holds "
                        f"{len(samples)} images but {landed.paths['att_maps']} has maps of {len(att_maps)}: remake "
                        f"the model with {landed.remake}")
    kind = model_type(landed.args)
    saliencies = [saliency_map(maps, norm, kind).numpy() for maps, norm in zip(att_maps, norms)]
    values = test_values(landed)
    return {"accuracy": values.get("accuracy"), "sparsity": values.get("sparsity"),
            "local": localisation(landed.args, samples, saliencies, range(len(saliencies)))}


def post_hoc_row(exp_folder, landed, source):
    """The row of a post-hoc saliency '<model_id>-<method>': the model's accuracy; sparsity, energy in part and
    pointing game of the saved post-hoc maps of the evaluated images (each map its own weight, norm 1)."""
    method = source.split("-", 1)[1]
    remake = landed.curves_command("Del", "--att_metrics_post_hoc", method)
    paths = results_io.post_hoc_maps_paths(exp_folder, source)
    try:
        with open(paths["meta"]) as file:
            meta = json.load(file)
    except (OSError, ValueError):
        raise UserError(f"the maps of {source} ({paths['maps']}) or their metadata are missing or unreadable: "
                        f"remake them with {remake}") from None
    if meta.get("run_id") != landed.run_id:
        raise UserError(f"{paths['maps']} comes from run {meta.get('run_id')} of '{landed.model_id}' but the "
                        f"model's files are run {landed.run_id}: remake them with {remake}")
    maps = load_array(paths["maps"], remake)
    if maps.ndim != 3 or len(maps) != len(meta["images"]):
        raise UserError(f"{paths['maps']} does not hold one map per evaluated image: remake it with {remake}")
    from load_data import scan_test_folder
    scaled = torch.from_numpy(maps).float()[:, None]
    return {"accuracy": test_values(landed).get("accuracy"),
            "sparsity": float(sparsity(scaled, torch.ones_like(scaled)).mean()),
            "local": localisation(landed.args, scan_test_folder(landed.args), maps, meta["images"])}


def fmt(value, half=None, digits=3):
    if value is None or np.isnan(value):
        return "-"
    return f"{value:.{digits}f}" + ("" if half is None or np.isnan(half) else f" ±{half:.{digits}f}")


def experiment_rows(exp_folder):
    """Every model of one experiment, and every post-hoc saliency of a model ('<model_id>-<method>'):
    (rows {source: {column: value}}, curves {metric: {source: (N, T, 2)}}, uniform-saliency energy in part or
    None). DAUC and IAUC are arrays of per-image AUCs (absent without curves); energy in part and pointing game
    are present where the test set has part masks."""
    landed = landed_runs(exp_folder)
    results = {metric: load_aucs(exp_folder, metric, landed) for metric in METRICS}
    sources = sorted(set(landed) | {source for metric in METRICS for source in results[metric]})
    rows, uniform_energy = {}, None
    for source in sources:
        model_id = source.split("-", 1)[0]
        base = own_map_row(landed[model_id]) if source == model_id else post_hoc_row(exp_folder, landed[model_id],
                                                                                     source)
        row = {"accuracy": base["accuracy"], "sparsity": base["sparsity"]}
        for metric in METRICS:
            if source in results[metric]:
                row[METRIC_NAMES[metric]] = results[metric][source][0]
        if base["local"] is not None:
            row["energy in part"], row["pointing game"], uniform_energy = base["local"]
        rows[source] = row
    curves = {metric: {source: curves for source, (_, curves) in results[metric].items()} for metric in METRICS}
    return rows, curves, uniform_energy


METRIC_NAMES = {"Del": "DAUC", "Add": "IAUC"}
COLUMNS = ("accuracy", "sparsity", "DAUC", "IAUC", "energy in part", "pointing game")


def print_table(header, rows):
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def main(argv=None):
    try:
        summarise(argv)
    except UserError as error:
        sys.exit(f"error: {error}")


def summarise(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_id", nargs="+", default=["CUB"],
                        help="experiment(s) whose results are read; several are aggregated (e.g. one per seed)")
    parser.add_argument("--results_dir", default=os.path.join(REPO_ROOT, "results"), help="results root")
    parser.add_argument("--vis_dir", default=os.path.join(REPO_ROOT, "vis"), help="plots go to <vis_dir>/<exp_id>/")
    opts = parser.parse_args(argv)
    results_dir, vis_dir = resolve_path(opts.results_dir), resolve_path(opts.vis_dir)
    for exp_id in opts.exp_id:
        exp_folder = os.path.join(results_dir, exp_id)
        if not os.path.isdir(exp_folder):
            raise UserError(f"no results folder {exp_folder}: train a model first (./train.sh MODEL_ID)")
        if not glob.glob(os.path.join(exp_folder, "model*_epoch*_test.csv")):
            raise UserError(f"no results in {exp_folder}: run ./train.sh MODEL_ID, then ./get_dauc_scores.sh "
                            f"MODEL_ID and ./get_iauc_scores.sh MODEL_ID")
    if len(opts.exp_id) == 1:
        summarise_experiment(results_dir, vis_dir, opts.exp_id[0])
    else:
        summarise_seeds(results_dir, vis_dir, opts.exp_id)


def write_experiment_csvs(exp_folder, rows):
    """attMetrics_<Del|Add>.csv and _pop.csv of one experiment; returns {metric: {model_id: per-image AUCs}}
    for the metrics that have curves."""
    written = {}
    for metric in METRICS:
        aucs = {model_id: row[METRIC_NAMES[metric]] for model_id, row in rows.items() if METRIC_NAMES[metric] in row}
        if aucs:
            write_auc_csvs(exp_folder, metric, aucs)
            written[metric] = aucs
    return written


def summarise_experiment(results_dir, vis_dir, exp_id):
    """One experiment: CSVs, plots and a table with 95% intervals over the test images."""
    exp_folder, vis_folder = os.path.join(results_dir, exp_id), os.path.join(vis_dir, exp_id)
    rows, curves, uniform_energy = experiment_rows(exp_folder)
    for metric, aucs in write_experiment_csvs(exp_folder, rows).items():
        os.makedirs(vis_folder, exist_ok=True)
        plot_ttest(os.path.join(vis_folder, f"ttest_{metric}.png"), metric, *welch_matrix(aucs))
        plot_mean_curves(os.path.join(vis_folder, f"curves_{metric}.png"), metric,
                         {model_id: (aucs[model_id], model_curves) for model_id, model_curves in curves[metric].items()})
    header = ["model_id", "accuracy", "sparsity", "DAUC (n, 95% CI)", "IAUC (n, 95% CI)",
              "energy in part", "pointing game"]
    table = []
    for model_id, row in sorted(rows.items()):
        cells = [model_id, fmt(row["accuracy"]), fmt(row["sparsity"])]
        for name in ("DAUC", "IAUC"):
            cells.append(f"{fmt(*mean_ci(row[name]))} (n={len(row[name])})" if name in row else "-")
        cells += [fmt(row.get("energy in part")), fmt(row.get("pointing game"))]
        table.append(cells)
    print_table(header, table)
    print("DAUC: lower is better; IAUC: higher is better.")
    if uniform_energy is not None:
        print(f"energy in part of a uniform saliency map (chance): {uniform_energy:.3f}")
    if any(curves.values()):
        print(f"CSV files in {exp_folder}, plots in {vis_folder}")


def seed_values(per_experiment):
    """{model_id: {column: per-experiment values (in experiment order)}} from experiment_rows rows; a DAUC or
    IAUC value is the experiment's mean over images. A model missing from an experiment has fewer values."""
    values = {}
    for rows in per_experiment:
        for model_id, row in rows.items():
            model_values = values.setdefault(model_id, {column: [] for column in COLUMNS})
            for column in COLUMNS:
                if row.get(column) is not None:
                    model_values[column].append(float(np.mean(row[column])))
    return values


def summarise_seeds(results_dir, vis_dir, exp_ids):
    """Several experiments (seeds): per-model means over them, 95% t-intervals, Welch tests on the
    per-experiment means, mean curves with a band."""
    summary_id = "+".join(exp_ids)
    summary_folder, vis_folder = os.path.join(results_dir, summary_id), os.path.join(vis_dir, summary_id)
    per_experiment = [experiment_rows(os.path.join(results_dir, exp_id)) for exp_id in exp_ids]
    for exp_id, (rows, _, _) in zip(exp_ids, per_experiment):
        write_experiment_csvs(os.path.join(results_dir, exp_id), rows)
    values = seed_values([rows for rows, _, _ in per_experiment])
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
    results_io.atomic_write_csv(os.path.join(summary_folder, "summary.csv"), header, csv_rows)
    for metric in METRICS:
        name = METRIC_NAMES[metric]
        means = {model_id: np.array(model_values[name]) for model_id, model_values in values.items()
                 if model_values[name]}
        if not means:
            continue
        results_io.atomic_write_csv(os.path.join(summary_folder, f"attMetrics_{metric}_seeds.csv"),
                                    ["model_id"] + list(exp_ids),
                                    [[model_id] + list(model_means) for model_id, model_means in sorted(means.items())])
        os.makedirs(vis_folder, exist_ok=True)
        plot_ttest(os.path.join(vis_folder, f"ttest_{metric}.png"), metric, *welch_matrix(means))
        plot_band_curves(os.path.join(vis_folder, f"curves_{metric}.png"), metric,
                         [curves[metric] for _, curves, _ in per_experiment])
    table = [[model_id] + [f"{fmt(*mean_ci(model_values[column]))}" if model_values[column] else "-"
                           for column in COLUMNS] + [str(max(len(v) for v in model_values.values()))]
             for model_id, model_values in sorted(values.items())]
    print(f"mean and 95% interval over {len(exp_ids)} experiments ({', '.join(exp_ids)})")
    print_table(["model_id", *COLUMNS, "n"], table)
    print("DAUC: lower is better; IAUC: higher is better.")
    uniform = [uniform for _, _, uniform in per_experiment if uniform is not None]
    if uniform:
        print(f"energy in part of a uniform saliency map (chance): {np.mean(uniform):.3f}")
    print(f"CSV files in {summary_folder}, plots in {vis_folder}")


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
        x = curve_x(experiment_curves[0][0, :, 0], metric)
        center = means.mean(axis=0)
        line, = ax.plot(x, center, label=f"{model_id} (n={len(means)})")
        if len(means) > 1:
            half = stats.t.ppf(0.975, len(means) - 1) * means.std(axis=0, ddof=1) / np.sqrt(len(means))
            ax.fill_between(x, center - half, center + half, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("share of the map " + ("deleted" if metric == "Del" else "inserted"))
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {'deletion' if metric == 'Del' else 'insertion'} curve, 95% band over experiments")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
