"""Reading one experiment's saved files back: the landed models, the sets of the perturbation tasks, the
per-image values of the scores, and the saliency maps of every source, each checked to come from the run
that made the model's landed files."""
import json
import os

import numpy as np

from brnpa.core.errors import UserError
from brnpa.metrics.perturbation import saliencies_from_maps
from brnpa.metrics.saliency import POST_HOC_NAMES, saliency_source
from brnpa.metrics.scores import SCORES
from brnpa.metrics.tasks import SANITY_TASK, TASKS
from brnpa.runs import lifecycle, results_io


def landed_runs(exp_folder):
    """{model_id: lifecycle.LandedRun} of every model with a test CSV in exp_folder."""
    return {model_id: lifecycle.LandedRun(exp_folder, model_id)
            for model_id in results_io.tested_model_ids(exp_folder)}


# The arrays every set has besides its task's (jobs/attention_metrics.write_set): which images, and the
# class each one's saliency explains.
REQUIRED_ARRAYS = ("img_inds", "preds")


def load_task_sets(exp_folder, task, landed):
    """({source id: {array name: array}}, notes) for every set of a perturbation task (brnpa/metrics/tasks.py) in
    exp_folder, where the source is a model id (or '<model_id>-<method>'). Every set must come from the run
    that made the model's landed files (landed: {model_id: LandedRun}), name this source and task in its
    .json and hold REQUIRED_ARRAYS. A set without its .json (its landing was interrupted) is left out, with a
    note naming the command that finishes it. An array missing from a set (one that an older version did not
    write) is missing from its dict. Images with non-finite values (task.undefined_arrays may hold nan where a
    value is not defined) are listed in the dict's 'non_finite' (test indices) and get a note."""
    results, notes = {}, []
    for source, path in results_io.task_file_names(exp_folder, task.key).items():
        model_id, method = results_io.parse_source_id(source, POST_HOC_NAMES)
        if model_id not in landed:
            raise UserError(unknown_source_message(exp_folder, source, path, model_id, method))
        model = landed[model_id]
        paths = results_io.att_metrics_paths(exp_folder, source, task.key)
        if not os.path.exists(paths["meta"]):
            remake = model.curves_command(task.key, source, lifecycle.progress_signature(exp_folder, source, task.key))
            notes.append(f"the {task.description} of {source} are incomplete ({path} has no .json beside "
                         f"it): run {remake} to finish them")
            continue
        repair = f"{model.curves_command(task.key, source)} --overwrite True"
        try:
            with open(paths["meta"]) as file:
                meta = json.load(file)
            run_id = meta["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{path} has no readable metadata ({paths['meta']}): remake it with {repair}") from None
        # a rerun without --overwrite True takes the set's .json at its word; with it, the same set is made
        repair = f"{model.curves_command(task.key, source, meta.get('signature'))} --overwrite True"
        model.check_run_id(path, run_id, repair)
        named = (meta.get("source", source), meta.get("metric", task.key))
        if named != (source, task.key):
            raise UserError(f"{paths['meta']} says its files are the {named[1]} set of {named[0]}, but they are named "
                            f"as the {task.key} set of {source} (copied or renamed?): remake them with {repair}")
        arrays = {name: results_io.read_array(array_path, repair) for name, array_path in paths.items()
                  if name != "meta" and os.path.exists(array_path)}
        missing = [paths[name] for name in REQUIRED_ARRAYS if name not in arrays]
        if missing:
            raise UserError(f"the {task.description} of {source} lack {', '.join(missing)}: remake them with "
                            f"{repair}")
        if len({len(array) for array in arrays.values()}) != 1:
            raise UserError(f"the files of the {task.description} of {source} ({path} and the files beside it) "
                            f"hold different image counts: remake them with {repair}")
        curves = arrays.get("curves")
        if task.curve is not None and (curves.ndim != 3 or curves.shape[2] != 2):
            raise UserError(f"{path} does not hold curves (shape {curves.shape}): remake it with {repair}")
        undefined = None if task.curve is None else task.curve.undefined(curves)
        if undefined is not None:
            notes.append(f"the {task.description} of {source} are not a score: {undefined}; its {task.curve.name} "
                         f"is left out")
            continue
        arrays["non_finite"] = non_finite_images(arrays, task)
        if len(arrays["non_finite"]):
            notes.append(f"the {task.description} of {source} hold non-finite values for test images "
                         f"{', '.join(map(str, arrays['non_finite'].tolist()))}: those images are left out of every "
                         f"score of this set; {repair} computes it again")
        results[source] = arrays
    return results, notes


def non_finite_images(arrays, task):
    """Test indices (sorted, int array) of the images of a set of `task` (brnpa/metrics/tasks.py) whose float arrays
    hold a nan or an inf, but for the nans its undefined_arrays allow (a value not defined on that image, such as
    SSIM of a tiny map); every array is checked, the per-image side arrays included. arrays: {array name:
    (N, ...) array} with 'img_inds' (N,)."""
    bad = np.zeros(len(arrays["img_inds"]), dtype=bool)
    for name, array in arrays.items():
        if name == "img_inds" or array.dtype.kind != "f":
            continue
        flagged = ~np.isfinite(array).reshape(len(array), -1)
        if name in task.undefined_arrays:
            allowed = task.undefined_arrays[name](arrays)[:, None] & np.isnan(array).reshape(len(array), -1)
            flagged &= ~allowed
        bad |= flagged.any(axis=1)
    return np.sort(np.asarray(arrays["img_inds"])[bad]).astype(np.int64)


def unknown_source_message(exp_folder, source, path, model_id, method):
    """The error for a set whose source names no landed model: a model to train, or a name this code does not
    read (a '-' suffix that is no post-hoc method)."""
    if method is None and "-" in source:
        suffix = source.rpartition("-")[2]
        return (f"{path} is not a file of this code: '{suffix}' is not a post-hoc method (one of "
                f"{', '.join(POST_HOC_NAMES)}); move or delete the file")
    return (f"{path} has no model beside it: '{model_id}' has no finished run in {exp_folder} (train it with "
            f"{lifecycle.train_command(None, model_id)}, or delete the file)")


def score_values(sets, landed):
    """({score name: {source: per-image values (N,)}}, {score name: {source: per-image denominators (N,)}} for
    the ratio scores, notes) of every score of brnpa/metrics/scores.py, from the sets of its task (sets: {task key:
    load_task_sets result}). A set that lacks an array a score needs gets a note with the command that
    computes it again, instead of a value; the images of the set's 'non_finite' get nan (left out)."""
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
            left_out = np.isin(arrays["img_inds"], arrays.get("non_finite", ()))
            values[score.name][source] = np.where(left_out, np.nan, score.per_image(arrays))
            if score.denominator is not None:
                denominators.setdefault(score.name, {})[source] = np.where(left_out, np.nan,
                                                                           score.denominator(arrays))
    return values, denominators, notes


def test_values(landed):
    """The model's test CSV row as floats (the run id left out)."""
    return {key: float(value) for key, value in landed.test.items() if key != "run_id"}


def incomplete_models(exp_folder, landed):
    """One line per model of exp_folder whose files were being replaced when its run stopped (it has no test
    CSV, so it is not in landed), with the command that finishes it."""
    notes = []
    for name in lifecycle.interrupted_stages(exp_folder):
        if results_io.parse_curve_stage_name(name) is None and name not in landed:
            config = lifecycle.staged_config(exp_folder, name)
            notes.append(f"model '{name}' is incomplete (its files were being replaced when its run stopped): "
                         f"run {lifecycle.train_command(None, name, config=config)} to finish it")
    return notes


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
                refusal = curve_refusal(TASKS[key], landed[model_id])
                if refusal is not None:
                    notes.append(f"{names} of {source}: not computable, {refusal}")
                    continue
                progress = lifecycle.progress_signature(exp_folder, source, key)
                command = landed[model_id].curves_command(key, source, progress)
                notes.append(f"{names} of {source}: run {command}" + (
                    f" (it resumes the progress a stopped run saved, {len(progress.get('images', ()))} images)"
                    if progress else ""))
    return notes


def curve_refusal(task, landed):
    """Why a curve task cannot run on a model's maps (metrics.curves.CurveMetric.refusal, one cell per step), in
    a few words with the map size, or None (and None for a task that is no curve)."""
    if task.curve is None:
        return None
    height, width = np.load(landed.paths["att_maps"], mmap_mode="r").shape[-2:]
    refusal = task.curve.refusal(height * width, 1)
    return None if refusal is None else f"the model's maps are {height} x {width}: {refusal}"


def test_folder_samples(config):
    from brnpa.data.load_data import scan_test_folder
    return scan_test_folder(config.data_dir, config.dataset_test, config.class_nb)


def own_saliencies(landed):
    """(test samples, the saliency (h, w) of every test image) from a model's saved maps and norms."""
    from brnpa.models.heads import head_class
    att_maps = results_io.read_array(landed.paths["att_maps"], landed.remake)
    norms = results_io.read_array(landed.paths["norm"], landed.remake)
    samples = test_folder_samples(landed.args)
    if len(samples) != len(att_maps):
        raise UserError(f"the test folder {os.path.join(landed.args.data_dir, landed.args.dataset_test)} holds "
                        f"{len(samples)} images but {landed.paths['att_maps']} has maps of {len(att_maps)}: remake "
                        f"the model with {landed.remake}")
    saliencies = saliencies_from_maps(att_maps, norms, head_class(landed.args.head), range(len(att_maps)))
    return samples, [saliency.numpy() for saliency in saliencies]


def post_hoc_saliencies(exp_folder, landed, source, tag=None):
    """(test indices of the evaluated images, their maps (N, h, w)) of a post-hoc saliency
    '<model_id>-<method>' under the configuration `tag` (post_hoc_configuration; None: the untagged maps of an
    older version), checked to come from the model's landed run."""
    remake = landed.curves_command(next(iter(TASKS)), source)
    paths = results_io.post_hoc_maps_paths(exp_folder, source, tag)
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


def post_hoc_configuration(exp_folder, source, task_keys=None):
    """(tag, notes) of a post-hoc source's sets, the tasks task_keys (default: every task with a landed set of
    it): tag names the maps its row shows, those of its first set in TASKS order (None for sets of an older
    version, whose maps are untagged); notes has one line where its sets were computed with different values of
    the source's options (its identity), so that its row mixes configurations."""
    method = results_io.parse_source_id(source, POST_HOC_NAMES)[1]
    if task_keys is None:
        task_keys = [key for key in TASKS
                     if os.path.exists(results_io.att_metrics_paths(exp_folder, source, key)["meta"])]
    metas = {key: set_meta(exp_folder, source, key) for key in TASKS if key in task_keys}
    if not metas:
        return None, []
    configurations = {}
    for key, meta in metas.items():
        values = tuple((name, meta.get(name)) for name in saliency_source(method).identity)
        configurations.setdefault(values, []).append(key)
    first = next(iter(metas))
    notes = []
    if len(configurations) > 1:
        parts = "; ".join(", ".join(f"--{name} {value}" for name, value in values) + " for " + ", ".join(keys)
                          for values, keys in configurations.items())
        notes.append(f"the sets of {source} were computed with different options of {method} ({parts}): its row "
                     f"mixes them, and its sparsity, localisation and maps are those of {first}; compute the others "
                     f"again with the options of {first} (--overwrite True)")
    return metas[first].get("maps_tag"), notes


def source_saliencies(exp_folder, landed, source):
    """{test index: saliency (h, w)} of a source: a model's own maps (every test image) or a post-hoc one's
    (the evaluated images, the configuration of its row: post_hoc_configuration). landed: {model_id:
    lifecycle.LandedRun}."""
    model_id, method = results_io.parse_source_id(source, POST_HOC_NAMES)
    if method is None:
        return dict(enumerate(own_saliencies(landed[model_id])[1]))
    tag = post_hoc_configuration(exp_folder, source)[0]
    return dict(zip(*post_hoc_saliencies(exp_folder, landed[model_id], source, tag)))


def set_meta(exp_folder, source, task_key):
    """The metadata (.json) of a source's set of a perturbation task, as written when it landed."""
    with open(results_io.att_metrics_paths(exp_folder, source, task_key)["meta"]) as file:
        return json.load(file)


def sanity_stages(exp_folder, source):
    """The names of the stages a source's sanity set randomised, in their order (from its metadata)."""
    return set_meta(exp_folder, source, SANITY_TASK).get("sanity_stages", "").split(",")
