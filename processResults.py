"""DAUC / IAUC from the saved curves, with tests, plots and a summary table.

    python3 processResults.py --exp_id CUB

Reads <results_dir>/<exp_id>/attMetr<Del|Add>_<model_id>.npy and the test
CSVs; writes attMetrics_<Del|Add>.csv (model_id,mean) and
attMetrics_<Del|Add>_pop.csv (model_id, then every image's AUC) there, and
the Welch t-test matrices and mean curves to vis/<exp_id>/. Lower DAUC is
better; higher IAUC is better. Where the test set has ground-truth part masks
(<dataset_test>_masks, the synthetic data), it also reports the share of
saliency inside the part and the pointing game.
"""
import argparse
import glob
import json
import os
import re
import sys

import numpy as np
from scipy import stats

import results_io
import runs
from args import REPO_ROOT, resolve_path
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


def localisation(landed):
    """(energy in mask, pointing game, uniform-saliency energy) over the test set when part masks exist."""
    from load_data import load_mask_array, scan_test_folder
    from models.net import model_type
    args = landed.args
    mask_folder = os.path.join(args.data_dir, args.dataset_test + "_masks")
    if not os.path.isdir(mask_folder):
        return None
    att_maps = load_array(landed.paths["att_maps"], landed.remake)
    norms = load_array(landed.paths["norm"], landed.remake)
    samples = scan_test_folder(args)
    if len(samples) != len(att_maps):
        raise UserError(f"the test folder {os.path.join(args.data_dir, args.dataset_test)} holds {len(samples)} "
                        f"images but {landed.paths['att_maps']} has maps of {len(att_maps)}: remake the model "
                        f"with {landed.remake}")
    kind = model_type(args)
    energies, hits, areas = [], [], []
    test_folder = os.path.join(args.data_dir, args.dataset_test)
    for (path, _), maps, norm in zip(samples, att_maps, norms):
        mask = load_mask_array(os.path.join(mask_folder, os.path.relpath(path, test_folder)), args)
        saliency = saliency_map(maps, norm, kind).numpy()
        energies.append(energy_in_mask(saliency, mask))
        hits.append(pointing_game(saliency, mask))
        areas.append(mask.mean())
    return float(np.mean(energies)), float(np.mean(hits)), float(np.mean(areas))


def fmt(value, half=None, digits=3):
    if value is None or np.isnan(value):
        return "-"
    return f"{value:.{digits}f}" + ("" if half is None or np.isnan(half) else f" ±{half:.{digits}f}")


def main(argv=None):
    try:
        summarise(argv)
    except UserError as error:
        sys.exit(f"error: {error}")


def summarise(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_id", default="CUB", help="experiment whose results are read")
    parser.add_argument("--results_dir", default=os.path.join(REPO_ROOT, "results"), help="results root")
    parser.add_argument("--vis_dir", default=os.path.join(REPO_ROOT, "vis"), help="plots go to <vis_dir>/<exp_id>/")
    opts = parser.parse_args(argv)
    exp_folder = os.path.join(resolve_path(opts.results_dir), opts.exp_id)
    vis_folder = os.path.join(resolve_path(opts.vis_dir), opts.exp_id)
    if not os.path.isdir(exp_folder):
        sys.exit(f"error: no results folder {exp_folder}: train a model first (./train.sh MODEL_ID)")

    landed = landed_runs(exp_folder)
    results = {metric: load_aucs(exp_folder, metric, landed) for metric in METRICS}
    model_ids = sorted(landed)
    if not model_ids:
        sys.exit(f"error: no results in {exp_folder}: run ./train.sh MODEL_ID, then ./get_dauc_scores.sh MODEL_ID "
                 f"and ./get_iauc_scores.sh MODEL_ID")
    for metric in METRICS:
        if results[metric]:
            aucs = {model_id: values for model_id, (values, _) in results[metric].items()}
            write_auc_csvs(exp_folder, metric, aucs)
            os.makedirs(vis_folder, exist_ok=True)
            plot_ttest(os.path.join(vis_folder, f"ttest_{metric}.png"), metric, *welch_matrix(aucs))
            plot_mean_curves(os.path.join(vis_folder, f"curves_{metric}.png"), metric, results[metric])

    header = ["model_id", "accuracy", "sparsity", "DAUC (n, 95% CI)", "IAUC (n, 95% CI)",
              "energy in part", "pointing game"]
    rows, uniform_energy = [], None
    for model_id in model_ids:
        values = test_values(landed[model_id])
        row = [model_id, fmt(values.get("accuracy")), fmt(values.get("sparsity"))]
        for metric in METRICS:
            if model_id in results[metric]:
                aucs = results[metric][model_id][0]
                row.append(f"{fmt(*mean_ci(aucs))} (n={len(aucs)})")
            else:
                row.append("-")
        local = localisation(landed[model_id])
        row += [fmt(local[0]), fmt(local[1])] if local else ["-", "-"]
        uniform_energy = local[2] if local else uniform_energy
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    print("DAUC: lower is better; IAUC: higher is better.")
    if uniform_energy is not None:
        print(f"energy in part of a uniform saliency map (chance): {uniform_energy:.3f}")
    if any(results[m] for m in METRICS):
        print(f"CSV files in {exp_folder}, plots in {vis_folder}")


if __name__ == "__main__":
    main()
