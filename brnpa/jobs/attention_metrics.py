"""The perturbation tasks (--attention_metrics KEY, brnpa/metrics/tasks.py) on a trained model's saliency.

Reads the model's finished run (test maps and norms, .ini and checkpoint, which must share one run id), draws
--att_metrics_img_nb test images with the seed, and runs the task on each image (for a curve of
brnpa/metrics/curves.py, its curve: docs/METHOD.md, "DAUC and IAUC" and "ROAD"). The saliency comes from a source of
brnpa/metrics/saliency.py: the model's own saved maps, or a post-hoc method (--att_metrics_post_hoc), whose maps are
saved as attMaps<model_id>-<method>_<tag>_test.npy (one file per configuration) and reused by the other tasks.
Progress is saved every few images, so a killed run started again with the same command resumes where it stopped.
The task's arrays are written as attMetr<key>_<source>.npy (and _<array>.npy; source: <model_id> or
<model_id>-<method>) with _imgInds, _preds and _targets beside them and a .json of metadata (run id, steps,
options). The files are staged and land together, the .json last (lifecycle.Stage): a killed run leaves the previous
set or none, never a mix. A task that recomputes saliencies from a changed model (the sanity checks) gets the model
and the source's live function through a TaskContext (brnpa/metrics/tasks.py).
"""
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch

from brnpa.core import files
from brnpa.core import distributed
from brnpa.runs import results_io
from brnpa.runs import lifecycle
from brnpa.runs.args import NOT_RUN_DEFINING, with_changes
from brnpa.core.errors import UserError
from brnpa.data.load_data import build_transform, load_rgb, make_loader, scan_test_folder
from brnpa.metrics.perturbation import cells_per_step, step_masks
from brnpa.metrics.saliency import OWN_MAPS, SourceInputs, image_seed, live_own_maps, pooled_to, saliency_source
from brnpa.metrics.tasks import TaskContext, task as perturbation_task
from brnpa.models.heads import head_class
from brnpa.models.resnet import feature_map_side
from brnpa.runs.runtime import (autocast, data_config, get_device, memory_format, model_config, pin_memory,
                                prepare_model, progress)

# Progress is saved about this many times over a run (and never less often than every image).
SAVES_PER_RUN = 20
# The run-defining options an evaluation takes from its own command: which experiment and model, the seed of the
# set (which images, the random draws of a source or task: another seed makes another set), the bf16 switch of
# the forward passes, and the search switch the scripts pass. The others are the trained run's.
EVALUATION_OPTIONS = frozenset({"exp_id", "model_id", "seed", "amp_eval", "optuna"})


def choose_images(image_nb, total, seed):
    """Sorted indices of the evaluated test images: a seeded choice without replacement (-1: all)."""
    if image_nb == -1 or image_nb >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=image_nb, replace=False))


def curve_args(args, landed, given=frozenset()):
    """The options the model was trained with, but for those that do not define a run (DAUC / IAUC
    options, device, paths), --amp_eval and the experiment, which come from this command: the curves go
    to the folder the user named, even where the run was trained under another exp_id (a copied folder);
    and --seed where the command gives it (given: the options written on the command line)."""
    own = {key: getattr(args, key) for key in NOT_RUN_DEFINING | {"amp_eval", "exp_id"} if hasattr(args, key)}
    if "seed" in given:
        own["seed"] = args.seed
    return with_changes(landed.args, **own)


def check_fixed_options(args, landed, given):
    """UserError naming the run-defining options written on the command line (given) with another value than
    the trained run's: an evaluation computes with the trained run's options and would ignore them."""
    fixed = sorted(name for name in given - NOT_RUN_DEFINING - EVALUATION_OPTIONS
                   if hasattr(landed.args, name) and getattr(args, name) != getattr(landed.args, name))
    if fixed:
        values = ", ".join(f"--{name} {getattr(args, name)} (trained: {getattr(landed.args, name)})" for name in fixed)
        these, them = ("these", "them") if len(fixed) > 1 else ("this", "it")
        raise UserError(f"{values}: the trained run of '{landed.model_id}' fixes {these} ({landed.config_file}), and "
                        f"an evaluation computes with the trained model as it is; drop {them}, or train a model with "
                        f"{them}")


def few_step_nb(config):
    """Steps of --att_metrics_few_steps: the cell count of the low-res map (strides 2, 2, 2) of this input
    (196 at 448 px with conv1 stride 2, 16 at 64 px with conv1 stride 1 and a max-pool of stride 2)."""
    return feature_map_side(config.img_size, config.resnet_stride, 2, 2, 2, config.pool_stride) ** 2


def step_plan(config, map_height, map_width):
    """(cells per step, step count) for maps of this size."""
    step_cells = cells_per_step(map_height, map_width, few_step_nb(config) if config.att_metrics_few_steps else None)
    return step_cells, map_height * map_width // step_cells


def check_curve_cells(task, config, map_height, map_width):
    """UserError where a curve task's maps have too few cells for its curve to mean anything (CurveMetric.refusal)."""
    if task.curve is None:
        return
    refusal = task.curve.refusal(map_height * map_width, step_plan(config, map_height, map_width)[0])
    if refusal is not None:
        raise UserError(f"the {task.curve.name} of '{config.model_id}' cannot be computed on its {map_height} x "
                        f"{map_width} maps: {refusal}; train it on larger images (--img_size) or with smaller "
                        f"strides")


def curve_steps(task, step_cells, step_nb):
    """{'step_nb', 'cells_per_step'} of the task's sets (their metadata): the step plan's for a task of the 'cells'
    rule and any other task; for the 'tenths' rule, its steps, of unequal size (cells_per_step None)."""
    if task.curve is not None and task.curve.steps == "tenths":
        return {"step_nb": task.curve.step_nb(step_nb), "cells_per_step": None}
    return {"step_nb": step_nb, "cells_per_step": step_cells}


def images_per_chunk(forwards_per_image, batch_size):
    """Images computed between two progress checks: enough for four full forward passes."""
    return max(1, math.ceil(4 * batch_size / forwards_per_image))


def read_partial(path, array_names, explain=False):
    """(signature, {array name: list of per-image tensors}) saved by an interrupted run, or (None, empty
    lists) (a damaged file only costs its work). explain: say so when the file is of an older version that
    did not save all these arrays."""
    empty = {name: [] for name in array_names}
    saved = lifecycle.read_progress(path)
    if saved is None:
        return None, empty
    records = saved.get("records", {})
    if not isinstance(records, dict):
        return None, empty
    missing = [name for name in array_names if name not in records]
    if missing:
        if explain:
            print(f"the progress saved in {path} is of an older version, which did not save "
                  f"{', '.join(missing)}: its images are computed again", file=sys.stderr)
        return None, empty
    return saved["signature"], {name: list(records[name]) for name in array_names}


def saved_signature(paths):
    """The signature of a finished set (None if the set is incomplete or unreadable). A set of an older
    version that lacks some of the arrays is said to be computed again."""
    missing = [name for name, path in paths.items() if not os.path.exists(path)]
    if missing and os.path.exists(paths["meta"]):
        print(f"{paths['meta']} has no {', '.join(missing)} beside it (an older version wrote it): computing the "
              f"set again", file=sys.stderr)
    if missing:
        return None
    try:
        with open(paths["meta"]) as file:
            return json.load(file).get("signature")
    except (OSError, ValueError):
        return None


def run_attention_metrics(args, given=frozenset()):
    """The task of --attention_metrics on --att_metrics_img_nb test images, for the model's own maps or for a
    post-hoc saliency of it with --att_metrics_post_hoc (see the module docstring). given: the names of the
    options written on the command line."""
    exp_folder = results_io.exp_dir(args.results_dir, args.exp_id)
    landed = lifecycle.LandedRun(exp_folder, args.model_id, args)
    check_fixed_options(args, landed, given)
    config = curve_args(args, landed, given)
    test_samples = scan_test_folder(config.data_dir, config.dataset_test, config.class_nb)
    att_maps = results_io.read_array(landed.paths["att_maps"], landed.remake)
    norms = results_io.read_array(landed.paths["norm"], landed.remake)
    if len(test_samples) != len(att_maps):
        raise lifecycle.NotTrainedError(f"the test folder holds {len(test_samples)} images but the saved maps cover "
                                   f"{len(att_maps)}: the test folder changed since training; remake the model "
                                   f"with {landed.remake}")
    image_inds = choose_images(config.att_metrics_img_nb, len(test_samples), config.seed)
    source = saliency_source(config.att_metrics_post_hoc or OWN_MAPS)
    values = {option.name: getattr(config, option.name) for option in source.options}
    values.update(seed=config.seed, batch_size=config.att_metrics_batch_size, val_batch_size=config.val_batch_size,
                  test_files=[os.path.relpath(path, os.path.join(config.data_dir, config.dataset_test))
                              for path, _ in test_samples], task=config.attention_metrics)
    refusal = source.check(values, tuple(att_maps.shape[2:])) if source.check is not None else None
    if refusal is not None:
        raise UserError(refusal)
    check_curve_cells(perturbation_task(config.attention_metrics), config, *att_maps.shape[2:])
    inputs = SourceInputs(values, att_maps, norms, head_class(config.head))
    compute_and_save_curves(config, landed, source, inputs, test_samples, image_inds, att_maps.shape[2:])


def saved_post_hoc_maps(paths, signature):
    """The saved post-hoc maps if they were computed with this signature, else None (they are computed
    again; an unreadable maps file is said to be so)."""
    try:
        with open(paths["meta"]) as file:
            if json.load(file) != signature:
                return None
    except (OSError, ValueError):
        return None
    try:
        return list(torch.from_numpy(results_io.read_array(paths["maps"], "the same command")))
    except UserError as error:
        print(f"{error}: they are computed again", file=sys.stderr)
        return None


def compute_saliencies(saliency, model, forward_images, subset, preds, image_inds, batch_size):
    """saliency(model, images, classes, indices) over the given images, in batches: a list of (h, w)."""
    saliencies = []
    for start in progress(range(0, len(subset), batch_size), "saliency",
                          images_of=lambda start: min(batch_size, len(subset) - start), image_total=len(subset)):
        images = forward_images(subset[start:start + batch_size])
        saliencies += list(saliency(model, images, preds[start:start + batch_size],
                                    image_inds[start:start + batch_size]))
    return saliencies


@torch.no_grad()
def compute_and_save_curves(config, landed, source, inputs, test_samples, image_inds, map_size):
    """The task's arrays for the chosen images and the saliencies a source gives (brnpa/metrics/saliency.py), staged
    and landed as one set (lifecycle.curve_stage), with progress saved on the way and resumed from. A post-hoc
    source's maps are saved too, and reused by the other tasks. The steps: plan (done, resume or fresh),
    predict, saliencies (computed or read back), the resumable loop, land."""
    exp_folder = results_io.exp_dir(config.results_dir, config.exp_id)
    task = perturbation_task(config.attention_metrics)
    source_id = results_io.source_id(config.model_id, config.att_metrics_post_hoc if source.post_hoc else None)
    paths = results_io.att_metrics_paths(exp_folder, source_id, task.key)
    device = get_device(config.cuda)
    layout = memory_format(config.channels_last, device)
    transform = build_transform(data_config(config)[1])
    step_cells, step_nb = step_plan(config, *map_size)
    subset = [test_samples[i] for i in image_inds]
    identity, signature = set_signature(landed, source, inputs, image_inds, step_cells, config)
    stage = lifecycle.curve_stage(exp_folder, source_id, task.key)
    partial = os.path.join(stage.folder, lifecycle.progress_name(distributed.rank(), distributed.world_size()))
    with distributed.main_only(stage.opened()):
        if plan_set(stage, paths, partial, task, signature, config, landed) == "done":
            if distributed.is_main():
                print(f"the {task.description} of {source_id} are already computed from run {landed.run_id} with "
                      f"these options: {paths[task.arrays[0]]} (--overwrite True computes them again)")
            return
        model = prepare_model(landed.load_model()[0], device, layout)  # only when there are curves to compute
        forward, load_images, test_images = model_io(model, device, layout, transform, test_samples, config)
        distributed.barrier()  # the staging folder exists for every process
        # each process takes a contiguous share of the images; rank 0 gathers and writes
        first, last = distributed.shard_bounds(len(subset))
        mine, my_inds = subset[first:last], image_inds[first:last]
        # a model may draw from torch's generator in its forward pass (BR-NPA's random vectors): seeded here and
        # at every chunk, its results do not depend on what the process did before, nor on a resumption
        torch.manual_seed(config.seed)
        preds = [int(pred) for images, _ in make_loader(mine, transform, config.att_metrics_batch_size,
                                                         config.num_workers, pin_memory(config))
                 for pred in forward(images.to(device)).argmax(dim=1).cpu()]
        saliency = source.function(dataclasses.replace(inputs, test_images=test_images))
        at_map_size, live = task_saliencies(source, saliency, map_size, inputs.head)
        draws_at_random = model_config(config).draws_at_random
        saliencies = set_saliencies(at_map_size, model, load_images, mine, preds, my_inds, (first, last), source,
                                    exp_folder, source_id, signature, config.att_metrics_batch_size, draws_at_random)
        if saliencies and tuple(saliencies[0].shape) != tuple(map_size):
            raise ValueError(f"the {source_id} saliency is {tuple(saliencies[0].shape)}, the model's maps "
                             f"{tuple(map_size)}")
        order = source_order(saliency)
        def load_with_predictions(indices):  # other images of the set, for a task that compares with them
            images = load_images([test_samples[i] for i in indices])
            return images, [int(pred) for pred in forward(images).argmax(dim=1).cpu()]
        context = TaskContext(model, live, my_inds, config.seed, {option.name: getattr(config, option.name)
                                                                  for option in task.options},
                              tuple(int(i) for i in image_inds), load_with_predictions)
        records = resumable_records(task, forward, load_images, mine, saliencies, preds, (step_cells, step_nb),
                                    order, partial, signature, source_id, config, context)
        records = {name: distributed.gather_in_order(values) for name, values in records.items()}
        preds = distributed.gather_in_order(preds)
        maps = ({"maps_tag": results_io.maps_tag(post_hoc_maps_key(signature, source, draws_at_random))}
                if source.post_hoc else {})
        meta = {"run_id": landed.run_id, "model_id": config.model_id, "source": source_id, "metric": task.key, **maps,
                "image_nb": len(subset), **curve_steps(task, step_cells, step_nb),
                "few_steps": config.att_metrics_few_steps, "amp_eval": config.amp_eval,
                "written": time.strftime("%Y-%m-%d %H:%M:%S"), **identity, "signature": signature}
        land_set(stage, landed, task, source_id, records, image_inds, preds, [label for _, label in subset], meta)
    if not distributed.is_main():
        return
    steps = "" if task.curve is None else f" ({task.curve.step_words(map_size[0] * map_size[1], step_cells)})"
    print(f"{task.description} of {len(subset)} images{steps} -> {paths[task.arrays[0]]}")


def task_saliencies(source, saliency, map_size, head):
    """(at_map_size, live) of a built source: what the curves see, a pixel-resolution source average-pooled to
    the map size (h, w) (they perturb map cells); and what a task that changes the model (the sanity checks) calls,
    the source at its own resolution, computed from the model it is given (for the model's own maps, from its
    forward pass: metrics.saliency.live_own_maps of its head class)."""
    at_map_size = saliency if source.resolution == "map" else pooled_to(saliency, map_size)
    live = saliency if source.post_hoc else live_own_maps(head)
    return at_map_size, live


def source_order(saliency):
    """The order of the cells a source imposes (its 'order' attribute: the released saliency's tie order), or
    the default one, metrics.perturbation.step_masks."""
    return getattr(saliency, "order", step_masks)


def set_signature(landed, source, inputs, image_inds, step_cells, config):
    """(identity: what names the source's results, signature: what defines the set; a set or saved progress of
    another signature is computed again)."""
    identity = {"post_hoc": config.att_metrics_post_hoc} if source.post_hoc else {}
    identity.update(source.identify(inputs.values))
    task_values = {option.name: getattr(config, option.name)
                   for option in perturbation_task(config.attention_metrics).options}
    identity.update(task_values)
    signature = {"run_id": landed.run_id, "images": image_inds.tolist(), "seed": config.seed,
                 "step_cells": step_cells, "batch_size": config.att_metrics_batch_size, "amp_eval": config.amp_eval,
                 **identity}
    return identity, signature


def land_set(stage, landed, task, source_id, records, image_inds, preds, targets, meta):
    """Rank 0 writes the set into the staging folder and lands it (unless the model was trained again
    meanwhile); every process waits until its progress file is no longer needed."""
    if not distributed.is_main():
        distributed.barrier()
        return
    if not landed.still_landed():
        raise lifecycle.NotTrainedError(f"'{landed.model_id}' was trained again while its {task.description} were "
                                   f"computed: run the same command again for the new model")
    write_set(results_io.att_metrics_paths(stage.folder, source_id, task.key), records, image_inds, preds, targets,
              meta)
    distributed.barrier()  # every process is done with its progress file
    stage.land(keep=[name for name in os.listdir(stage.folder) if name.startswith(lifecycle.PROGRESS_PREFIX)])


def model_io(model, device, layout, transform, test_samples, config):
    """(forward: images -> logits under --amp_eval, load_images: samples -> a batch on the device, test_images:
    the whole test set in the batches of the test pass, for the sources that need it)."""
    def forward(images):
        with autocast(device, config.amp_eval):
            return model(images.contiguous(memory_format=layout))["output"]

    def load_images(samples):
        return torch.stack([transform(load_rgb(path)) for path, _ in samples]).to(device)

    def test_images():
        for images, _ in make_loader(test_samples, transform, config.val_batch_size, config.num_workers,
                                     pin_memory(config)):
            yield images.to(device).contiguous(memory_format=layout)
    return forward, load_images, test_images


def plan_set(stage, paths, partial, task, signature, config, landed):
    """'done', 'resume' or 'fresh' (lifecycle.plan), decided by rank 0 from the landed set and the progress saved in
    the staging folder, and told to the other processes; 'fresh' empties the staging folder. A landed set of
    the same run is replaced by one of fewer images only with --overwrite True, or by resuming a replacement
    that was started with it (UserError otherwise)."""
    decision = None
    if distributed.is_main():
        saved = saved_signature(paths)
        if saved is not None:
            saved.setdefault("seed", landed.args.seed)  # a set written before the seed was in its signature
        staged_signature = read_partial(partial, task.arrays, explain=True)[0]
        resuming = config.resume and staged_signature == signature
        refusal = None if config.overwrite or resuming else replacement_refusal(saved, signature, task, paths)
        if refusal is not None:
            decision = {"refused": refusal}
        else:
            decision = lifecycle.plan(saved, signature, staged_signature, config.overwrite, config.resume)
            if decision == "fresh":
                if staged_signature is not None:
                    print(discarded_progress_line(staged_signature, signature, task, paths), file=sys.stderr)
                stage.fresh()
    decision = distributed.broadcast(decision)
    if isinstance(decision, dict):
        raise UserError(decision["refused"])
    return decision


def discarded_progress_line(staged, wanted, task, paths):
    """The line saying that the progress a stopped run saved (its signature: staged) is dropped for a set of
    another signature (wanted), and what differs."""
    differences = []
    for key in sorted(set(staged) | set(wanted)):
        if staged.get(key) == wanted.get(key):
            continue
        if key == "images":
            differences.append(f"{len(staged.get(key) or ())} images then, {len(wanted.get(key) or ())} now")
        else:
            differences.append(f"{key} {staged.get(key)} then, {wanted.get(key)} now")
    reason = ", ".join(differences) if differences else "--resume False"
    return (f"the progress a stopped run saved for the {task.description} in {paths[task.arrays[0]]} is dropped "
            f"({reason}): give the options it was made with to resume it")


def replacement_refusal(saved, wanted, task, paths):
    """The message refusing to replace a landed set of the same run (saved: its signature, or None) by one of
    fewer images (wanted), which would lose the images only it covers; None otherwise."""
    if saved is None or saved.get("run_id") != wanted["run_id"]:
        return None
    if len(wanted["images"]) >= len(saved.get("images", [])):
        return None
    return (f"the {task.description} in {paths[task.arrays[0]]} cover {len(saved['images'])} test images (seed "
            f"{saved.get('seed')}); this command asks for {len(wanted['images'])} and would replace them: add "
            f"--overwrite True to replace them, or give the --att_metrics_img_nb they were computed with")


def post_hoc_maps_key(signature, source, draws_at_random):
    """What defines a post-hoc source's maps, from a set's signature: the run, the images, --amp_eval, the source
    and its identity (its options, and the seed for a source that draws); for a model that draws in its forward
    pass, the seed and the batches too. Not the task's options nor its steps: every task on the same images
    shares one computation of the maps."""
    names = {"run_id", "images", "amp_eval", "post_hoc", *source.identity}
    if draws_at_random:
        names |= {"seed", "batch_size"}
    return {key: value for key, value in signature.items() if key in names}


def set_saliencies(saliency, model, load_images, mine, preds, my_inds, bounds, source, exp_folder, source_id,
                   signature, batch_size, draws_at_random):
    """This process's saliencies (h, w) of its images `mine`: a post-hoc source's saved maps where they were
    computed with the same key (post_hoc_maps_key), else computed (and, for a post-hoc source, saved under that
    key's tag for the other tasks; the gather is collective, so every process computes). bounds: (first, last)
    of this process's share; draws_at_random: whether the model draws in its forward pass."""
    if not source.post_hoc:
        return compute_saliencies(saliency, model, load_images, mine, preds, my_inds, batch_size)
    maps_signature = post_hoc_maps_key(signature, source, draws_at_random)
    maps_paths = results_io.post_hoc_maps_paths(exp_folder, source_id, results_io.maps_tag(maps_signature))
    saved = saved_post_hoc_maps(maps_paths, maps_signature)
    if saved is not None:
        return saved[bounds[0]:bounds[1]]
    saliencies = compute_saliencies(saliency, model, load_images, mine, preds, my_inds, batch_size)
    all_saliencies = distributed.gather_in_order(saliencies)
    if distributed.is_main():
        files.atomic_save_npy(maps_paths["maps"], torch.stack(all_saliencies).numpy())
        files.atomic_write_json(maps_paths["meta"], maps_signature)
    return saliencies


def resumable_records(task, forward, load_images, mine, saliencies, preds, steps, order, partial, signature,
                      source_id, config, context):
    """{array name: list of per-image tensors} of the task on this process's images, in chunks, resumed from the
    progress file `partial` when it holds this signature (and --resume), and saved to it every few images.
    steps: (cells per step, step count); context: the TaskContext of these images (its indices are cut to
    each chunk's)."""
    step_cells, step_nb = steps
    saved, records = read_partial(partial, task.arrays) if config.resume else (None, None)
    records = records if saved == signature else {name: [] for name in task.arrays}
    done = len(records[task.arrays[0]])
    if done:
        print(f"resuming the {task.description} of {source_id} after {done} of {len(mine)} images", file=sys.stderr)
    chunk = images_per_chunk(task.forwards_per_image(step_nb), config.att_metrics_batch_size)
    save_every, last_saved = max(chunk, len(mine) // SAVES_PER_RUN), done
    bar = progress(range(len(mine)), task.key, initial=done)
    while done < len(mine):
        stop = min(done + chunk, len(mine))
        torch.manual_seed(image_seed(config.seed, context.indices[done]))  # the chunk's first image
        computed = task.compute(forward, list(load_images(mine[done:stop])), saliencies[done:stop], preds[done:stop],
                                step_cells, config.att_metrics_batch_size, order,
                                dataclasses.replace(context, indices=list(context.indices[done:stop])))
        for name in task.arrays:
            records[name] += computed[name]
        bar.update(stop - done)
        done = stop
        if done - last_saved >= save_every and done < len(mine):
            files.atomic_save_torch(partial, {"signature": signature, "records": records})
            last_saved = done
    bar.close()
    return records


def write_set(staged, records, image_inds, preds, targets, meta):
    """The files of a set into the staging folder (staged: their paths): the task's arrays (floats as float64),
    the image indices, predictions and targets, and the .json of metadata last."""
    for name, values in records.items():
        array = torch.stack(values).numpy()
        files.atomic_save_npy(staged[name], array.astype(np.float64) if array.dtype.kind == "f" else array)
    files.atomic_save_npy(staged["img_inds"], image_inds)
    files.atomic_save_npy(staged["preds"], np.array(preds))
    files.atomic_save_npy(staged["targets"], np.array(targets))
    files.atomic_write_json(staged["meta"], meta)
