"""What a backbone choice changes: the same recipe trained twice per seed, once with each choice (two sets of
experiments, <first>_s<k> and <second>_s<k>), compared model by model on the test accuracy, DAUC, DC, the
energy in part, and the share of the saliency on the outer ring of map cells (the cells a padding touches
most); per seed, the paired Wilcoxon test of the images' DAUC and DC (analysis.comparisons.compare_sources),
and over the seeds the mean per-seed difference with its t-interval (compare_seeds).

    CONFIG=config_demo.config python3 run_models.py --models br_npa_low_res cnn --seeds 3 --exp_id zeros_s{seed} \\
        --tasks Del --padding_mode zeros     (and the same with circular)
    python3 -m bench.backbone_choice results zeros circular 3     (from the repository root)
"""
import sys

import numpy as np

from brnpa.analysis import comparisons
from brnpa.analysis.experiment import experiment_rows, indexed_values
from brnpa.analysis.sets import own_saliencies
from brnpa.analysis.statistics import defined_mean
from brnpa.runs import results_io


def outer_ring_share(saliency):
    """The share of a non-negative saliency (h, w) on the cells of the map's border."""
    saliency = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    inner = saliency[1:-1, 1:-1].sum() if min(saliency.shape) > 2 else 0.0
    total = saliency.sum()
    return float((total - inner) / total) if total > 0 else float("nan")


def experiment_numbers(folder):
    """{model_id: {'accuracy', 'DAUC', 'DC', 'energy in part', 'outer ring', 'per_image': {score: {test index:
    value}}}} of one experiment's models' own maps."""
    experiment = experiment_rows(folder)
    per_image = indexed_values(experiment)
    numbers = {}
    for model_id, landed in experiment.landed.items():
        row = experiment.rows[model_id]
        rings = [outer_ring_share(saliency) for saliency in own_saliencies(landed)[1]]
        numbers[model_id] = {"accuracy": row["accuracy"], "DAUC": defined_mean(row["DAUC"]),
                             "DC": defined_mean(row["DC"]), "energy in part": row.get("energy in part"),
                             "outer ring": defined_mean(rings),
                             "per_image": {name: per_image[name][model_id] for name in ("DAUC", "DC")}}
    return numbers


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    results_dir, first, second, seed_nb = argv[0], argv[1], argv[2], int(argv[3])
    runs = {choice: [experiment_numbers(results_io.exp_dir(results_dir, f"{choice}_s{seed}"))
                     for seed in range(1, seed_nb + 1)] for choice in (first, second)}
    columns = ("accuracy", "DAUC", "DC", "energy in part", "outer ring")
    print(f"per model: mean over the seeds both choices have (each seed's value in brackets), {first} then {second}")
    for model_id in sorted(set().union(*(run.keys() for choice_runs in runs.values() for run in choice_runs))):
        seeds = [k for k in range(seed_nb) if all(model_id in runs[choice][k] for choice in (first, second))]
        if not seeds:
            continue
        for choice in (first, second):
            chosen = [runs[choice][k][model_id] for k in seeds]
            cells = [f"{name} {np.mean([run[name] for run in chosen]):.3f} "
                     f"[{', '.join(f'{run[name]:.3f}' for run in chosen)}]" for name in columns]
            print(f"{model_id:16s} {choice:9s} seeds {','.join(str(k + 1) for k in seeds)}: " + "; ".join(cells))
        for name, lower in (("DAUC", True), ("DC", False)):
            per_seed = []
            for k in seeds:
                values = {choice: runs[choice][k][model_id]["per_image"][name] for choice in (first, second)}
                pair, = comparisons.compare_sources(values, lower, resamples=1000)
                per_seed.append(f"seed {k + 1}: median {pair.first}-{pair.second} {pair.median_difference:+.3f} "
                                f"[{pair.low:+.3f}, {pair.high:+.3f}], Wilcoxon p {pair.p:.2g}")
            line = f"  {name}: " + "; ".join(per_seed)
            if len(seeds) > 1:
                means = {choice: {f"s{k}": runs[choice][k][model_id][name] for k in seeds}
                         for choice in (first, second)}
                over, = comparisons.compare_seeds(means)
                line += f"; over seeds {over.first}-{over.second} {over.mean_difference:+.3f} ±{over.half_width:.3f}"
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
