"""The figures processResults.py writes to vis/<exp_id>/: test matrices and mean curves (with a band over
experiments)."""
import numpy as np

from brnpa.analysis.statistics import t_half_width
from brnpa.core.errors import UserError


def pyplot():
    """matplotlib's pyplot, drawing to files only."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_ttest(path, score, model_ids, p_values, title):
    """The matrix of the p-values (M, M) between every two sources (model_ids), titled '<title>, <score>'."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(model_ids) + 3, 1.0 * len(model_ids) + 2))
    image = ax.imshow(p_values, cmap="viridis_r", vmin=0, vmax=1)
    ax.set_xticks(range(len(model_ids)), model_ids, rotation=45, ha="right")
    ax.set_yticks(range(len(model_ids)), model_ids)
    for i in range(len(model_ids)):
        for j in range(len(model_ids)):
            color = "white" if p_values[i, j] < .5 else "black"
            ax.text(j, i, f"{p_values[i, j]:.2g}", ha="center", va="center", color=color)
    ax.set_title(f"{title}, {score.name}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_mean_curves(path, metric, curves_per_source):
    """The mean curve of each source (curves_per_source: {source: (N, T, 2)}) of a CurveMetric, the mean of its
    column (the AUC, or the mean score) in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model_id, curves in sorted(curves_per_source.items()):
        x = metric.x_axis(curves[0, :, 0])
        mean_summary = np.mean([metric.summarise(curve) for curve in curves])
        ax.plot(x, curves[:, :, 1].mean(axis=0), label=f"{model_id} ({mean_summary:.3f})")
    ax.set_xlabel(metric.x_label)
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {metric.name} curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_band_curves(path, metric, curves_per_experiment):
    """Mean curve of each model over experiments (each experiment's mean curve first), with a 95% band."""
    plt = pyplot()
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
    ax.set_xlabel(metric.x_label)
    ax.set_ylabel("score of the predicted class")
    ax.set_title(f"mean {metric.name} curve, 95% band over experiments")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_critical_difference(path, score, reliability, sources, p_matrix):
    """The critical-difference diagram of a score (Demšar 2006): each source at its mean rank over the images
    every source scored (1 the best), sources whose pair is not significant (p_matrix (S, S), Holm-adjusted,
    in the order of sources) joined by a bar; drawn by scikit-posthocs."""
    import pandas as pd
    import scikit_posthocs
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(sources) + 1.5))
    significance = pd.DataFrame(p_matrix, index=sources, columns=sources)
    scikit_posthocs.critical_difference_diagram(reliability.mean_ranks, significance, ax=ax)
    ax.set_title(f"{score.name} {score.arrow}: mean rank over {reliability.images} images (1: the best), "
                 f"Friedman p {reliability.friedman_p:.2g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_agreement(path, names, correlations, counts):
    """Heatmap of the Spearman correlations (K, K) between the scores over their (image, source) pairs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.8 * len(names) + 3, 0.7 * len(names) + 2))
    image = ax.imshow(correlations, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, "-" if np.isnan(correlations[i, j]) else f"{correlations[i, j]:.2f}", ha="center",
                    va="center", color="black")
    ax.set_title(f"Spearman correlation between scores over (image, source) pairs (n up to {counts.max()})",
                 fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sanity_curves(path, correlations, stages):
    """The mean over the images of the correlation between each source's map and its map after each stage of
    the randomisation (correlations: {source: (N, S)}), with its 95% t-interval; stages: {source: S names}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for source, values in sorted(correlations.items()):
        mean = values.mean(axis=0)
        line, = ax.plot(range(values.shape[1]), mean, marker="o", label=source)
        if len(values) > 1:
            half = t_half_width(values, axis=0)
            ax.fill_between(range(values.shape[1]), mean - half, mean + half, color=line.get_color(), alpha=0.2)
    names = next(iter(stages.values()))
    ax.set_xticks(range(len(names)), [f"+{name}" for name in names])
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("stages re-initialised, cumulatively from the top")
    ax.set_ylabel("Spearman ρ with the original map")
    ax.set_title("sanity: cascading model randomisation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
