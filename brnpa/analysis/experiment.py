"""One experiment as rows: for every source (a model's own maps, or '<model_id>-<method>'), its accuracy,
sparsity, per-image score values and localisation scores; and the same columns over several experiments."""
import dataclasses
import os
from typing import Optional

import numpy as np
import torch

from brnpa.analysis.statistics import defined_mean
from brnpa.analysis.sets import (incomplete_models, landed_runs, load_task_sets, not_computed_notes, own_saliencies,
                                 post_hoc_configuration, post_hoc_saliencies, score_values, test_folder_samples,
                                 test_values)
from brnpa.metrics.attention import sparsity
from brnpa.metrics.localisation import LOCALISATION_SCORES, localisation_scores
from brnpa.metrics.saliency import POST_HOC_NAMES
from brnpa.metrics.scores import SCORES
from brnpa.metrics.tasks import TASKS
from brnpa.runs import results_io
from brnpa.data import layout

COLUMNS = ("accuracy", "sparsity", *SCORES, *LOCALISATION_SCORES)


def localisation(config, samples, saliencies, indices):
    """({score name: per-image values (N,)} of brnpa/metrics/localisation.py, uniform-saliency energy: the mean share
    of the image the part covers) of saliencies (h, w) of the test images samples[i] for i in `indices`, when the
    test set has part masks (None otherwise)."""
    from brnpa.data.load_data import load_mask_array
    from brnpa.runs.runtime import data_config
    test_folder = os.path.join(config.data_dir, config.dataset_test)
    if not os.path.isdir(layout.mask_folder(test_folder)):
        return None
    geometry = data_config(config)[1]
    scores, areas = {name: [] for name in LOCALISATION_SCORES}, []
    for index, saliency in zip(indices, saliencies):
        mask = load_mask_array(layout.part_mask_path(test_folder, samples[index][0]), geometry)
        for name, value in localisation_scores(saliency, mask).items():
            scores[name].append(value)
        areas.append(mask.mean())
    return {name: np.array(values, dtype=np.float64) for name, values in scores.items()}, float(np.mean(areas))


def own_map_row(landed):
    """A model's row from its test CSV and saved maps (all test images)."""
    samples, saliencies = own_saliencies(landed)
    values = test_values(landed)
    return {"accuracy": values.get("accuracy"), "sparsity": values.get("sparsity"),
            "local": localisation(landed.args, samples, saliencies, range(len(saliencies)))}


def post_hoc_row(exp_folder, landed, source, tag):
    """The row of a post-hoc saliency '<model_id>-<method>': the model's accuracy; sparsity and localisation
    scores of its saved maps of the evaluated images under the configuration `tag` (analysis.sets.
    post_hoc_configuration; each map its own weight, norm 1)."""
    images, maps = post_hoc_saliencies(exp_folder, landed, source, tag)
    scaled = torch.from_numpy(maps).float()[:, None]
    return {"accuracy": test_values(landed).get("accuracy"),
            "sparsity": float(sparsity(scaled, torch.ones_like(scaled)).mean()),
            "local": localisation(landed.args, test_folder_samples(landed.args), maps, images)}


@dataclasses.dataclass
class Experiment:
    """What processResults reads of one experiment. rows: {source: {column: value}} (the scores of
    brnpa/metrics/scores.py are arrays of per-image values, absent without their task's set; the localisation scores
    are present where the test set has part masks); curves: {curve task key: {source: (N, T, 2)}};
    uniform_energy: the energy in part of a uniform saliency, or None; run_ids: {model_id: run id} of the runs
    summarised; incomplete: notes of incomplete sets; not_computed: notes of the scores a source has no set for,
    with the command that computes them; sets: {task key: {source: {array name: array}}} as read; landed:
    {model_id: lifecycle.LandedRun}; denominators: {ratio score name: {source: per-image denominators}}."""
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
        if method is None:
            base = own_map_row(landed[model_id])
        else:
            tag, notes = post_hoc_configuration(exp_folder, source, [key for key in TASKS if source in sets[key]])
            incomplete += notes
            base = post_hoc_row(exp_folder, landed[model_id], source, tag)
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


def seed_values(per_experiment):
    """{model_id: {column: per-experiment values (in experiment order)}} from experiment_rows rows; a score's
    value (DAUC, IAUC...) is the experiment's mean over the images it is defined on. An experiment where a column
    has no defined value (the model missing, no set, every image left out or undefined) adds no value to it, so
    that a column's count is the experiments it averages."""
    values = {}
    for rows in per_experiment:
        for model_id, row in rows.items():
            model_values = values.setdefault(model_id, {column: [] for column in COLUMNS})
            for column in COLUMNS:
                if row.get(column) is not None:
                    mean = defined_mean(row[column])
                    if np.isfinite(mean):
                        model_values[column].append(mean)
    return values


def indexed_values(experiment):
    """{score name: {source: {test index: value}}} of every score with values: each source's per-image values
    keyed by the test index of the image (the img_inds of the score's task set), so that two sources are
    compared image by image; a nan value (a score not defined on that image) is left out."""
    values = {}
    for name, score in SCORES.items():
        for source, row in experiment.rows.items():
            if name in row:
                indices = experiment.sets[score.task][source]["img_inds"]
                per_image = {index: value for index, value in zip(np.asarray(indices).tolist(), row[name].tolist())
                             if np.isfinite(value)}  # nan: not defined on that image (SSIM of maps under 3 x 3)
                if per_image:
                    values.setdefault(name, {})[source] = per_image
    return values
