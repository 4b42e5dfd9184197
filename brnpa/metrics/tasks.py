"""The table of perturbation tasks: what ./get_dauc_scores.sh, ./get_iauc_scores.sh,
./get_single_step_scores.sh, ./get_sanity_scores.sh and ./get_scores.sh TASK compute, per image.

A task perturbs each evaluated test image as its saliency map says (or, for the sanity checks, the model
itself) and saves per-image arrays, from which
the scores of brnpa/metrics/scores.py are computed; trainVal.py --attention_metrics <key> runs it
(brnpa/jobs/attention_metrics.py), which handles the images, the saliency sources, progress and the files. Each entry
states:
- key: the value of --attention_metrics, and the files' name attMetr<key>_<source>...;
- script: the shell script that runs it (./<script> MODEL_ID); None: the generic ./get_scores.sh <key> MODEL_ID;
- description: what it computes, in a few words ('deletion curves'), for --help and messages;
- arrays: the per-image arrays it saves. The first goes to attMetr<key>_<source>.npy, each other one to
  attMetr<key>_<source>_<name in camelCase>.npy (brnpa/runs/results_io.py); _imgInds, _preds, _targets and a .json of
  metadata are saved beside them for every task;
- compute(forward, images, saliencies, classes, cells_per_step, batch_size, order, context) -> {array name:
  list of one tensor per image}: forward maps (B, 3, H, W) to (B, class_nb) logits; images are (3, H, W),
  saliencies (h, w) in [0, 1], classes the predicted class of each image; order is the source's order of the
  cells (metrics.perturbation.step_masks or topk_step_masks); context: a TaskContext (the test indices, the
  seed, the model for a task that computes saliencies again from a changed model);
- options: its own trainVal.py options (core.options.Option, added to the option table by brnpa/runs/args.py),
  which define its sets besides the common ones (a set computed with other values is computed again);
- forwards_per_image(step_nb) -> the images it passes through the model per evaluated image (to size the
  chunks between two saves of progress);
- curve_key: the key of a curve task's CurveMetric (brnpa/metrics/curves.py), whose `curve` is used for the
  mean-curve plots; None otherwise;
- undefined_arrays: {array name: where(arrays) -> (N,) bool}, the arrays that may hold nan where a value is not
  defined, and on which images of the set ({array name: (N, ...) array}, 'img_inds' among them) it is not: SSIM
  of maps under 3 x 3, the input correlation of an image alone in its set. Any other non-finite value, in any
  array, makes processResults.py leave the image out of the set's scores, with a note.

A curve is added as one entry of brnpa/metrics/curves.py, whose task is made here (curve_task). Another task
is its compute function and one PerturbationTask here (and a script, or ./get_scores.sh); its scores go to
brnpa/metrics/scores.py. trainVal.py --help reads this table, so it imports no torch at its top: a compute
function imports what it needs when it runs.
"""
import dataclasses
from typing import Any, Callable, Optional

from brnpa.core.options import Option
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.stages import SANITY_STAGES

# The sanity task's key (the stages of its cascading randomisation are in brnpa/metrics/stages.py).
SANITY_TASK = "Sanity"


@dataclasses.dataclass(frozen=True)
class TaskContext:
    """What a task may use besides the images and their saliencies. model: the trained model; saliency: the
    source as saliency(model, images, classes, indices) computed from the model it is given, at the source's
    own resolution (for a model's own maps, metrics.saliency.live_own_maps); indices: the test indices of the
    images; seed: --seed; values: {option name: value} of the task's options; evaluated: the test indices of
    every image of the set; load: test indices -> (their images (B, 3, H, W) on the model's device, the
    model's predicted classes), for a task that needs other images of the set."""
    model: Any
    saliency: Callable
    indices: list
    seed: int
    values: dict
    evaluated: tuple = ()
    load: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class PerturbationTask:
    key: str
    script: Optional[str]
    description: str
    arrays: tuple
    compute: Callable
    forwards_per_image: Callable
    curve_key: Optional[str] = None
    options: tuple = ()
    undefined_arrays: dict = dataclasses.field(default_factory=dict)

    @property
    def curve(self):
        """The CurveMetric of a curve task (brnpa/metrics/curves.py), None for another task."""
        return None if self.curve_key is None else CURVE_METRICS[self.curve_key]

    @property
    def script_call(self):
        """How a shell runs it, before the model id: its own script, or the generic one with its key."""
        return self.script or f"{GENERIC_SCRIPT} {self.key}"


# The script that runs any task: ./get_scores.sh <task key> MODEL_ID [trainVal.py options...]
GENERIC_SCRIPT = "get_scores.sh"


def curve_task(metric):
    """The task of a CurveMetric (brnpa/metrics/curves.py), under its key: the curves (N, T, 2), the start image's
    score (N,) and the saliency each step perturbs (N, T) (metrics.perturbation.perturbation_records). An
    imputer's noise is drawn per image from numpy's default_rng([--seed, test index, 2])."""
    def compute(forward, images, saliencies, classes, cells_per_step, batch_size, order, context):
        seeds = None if context is None else [[context.seed, index, 2] for index in context.indices]
        return metric.records(forward, images, saliencies, classes, cells_per_step, batch_size, order, seeds)
    return PerturbationTask(metric.key, metric.script, metric.description, ("curves", "start_scores", "step_saliency"),
                            compute, curve_key=metric.key,
                            forwards_per_image=lambda step_nb: metric.step_nb(step_nb) + 1)


def compute_single_step(forward, images, saliencies, classes, cells_per_step, batch_size, order, context):
    """The single-step task: scores (N, 3) of the clean, kept and removed images (cells and order unused)."""
    from brnpa.metrics.faithfulness import single_step_scores
    return {"scores": single_step_scores(forward, images, saliencies, classes, batch_size)}


def compute_sanity(forward, images, saliencies, classes, cells_per_step, batch_size, order, context):
    """The sanity task (brnpa/metrics/sanity.py): per image, the correlation and SSIM between its saliency and the
    saliency after each stage of --sanity_stages (S,), the correlation of its saliency for its class and
    for another (a scalar), the saliencies after each stage (S, h, w, uint8, drawn by the report), and the
    correlation and SSIM of two passes of the unchanged model (scalars: the noise ceiling of a model that draws
    in its forward pass), and the correlation of its saliency with that of another image of the set (a scalar,
    input invariance). The saliencies are computed again, from the model, with context.saliency, at the
    source's own resolution."""
    import torch
    from brnpa.metrics.sanity import partner_indices, sanity_records
    stages = context.values["sanity_stages"].split(",")

    def partners(indices):
        partner_inds = partner_indices(indices, context.evaluated, context.seed)
        return (partner_inds, *context.load(partner_inds))
    return sanity_records(context.model, context.saliency, torch.stack(images), classes, context.indices, stages,
                          context.seed, partners)


def maps_under_3x3(arrays):
    """Where SSIM is not defined (metrics.sanity.ssim): on every image of a set whose maps, at the source's own
    resolution (the saved randomised maps (N, S, h, w)), are under 3 x 3; nowhere else. A set without those
    maps, of an older version, is given the benefit of the doubt."""
    import numpy as np
    image_nb = len(arrays["img_inds"])
    if "randomised_maps" not in arrays:
        return np.ones(image_nb, dtype=bool)
    return np.full(image_nb, min(arrays["randomised_maps"].shape[-2:]) < 3)


def alone_in_set(arrays):
    """Where the input correlation is not defined: an image alone in its set, which has no other image to be
    compared with (metrics.sanity.partner_indices)."""
    import numpy as np
    image_nb = len(arrays["img_inds"])
    return np.full(image_nb, image_nb == 1)


TASKS = {task.key: task for task in [
    *(curve_task(metric) for metric in CURVE_METRICS.values()),
    PerturbationTask("Single", "get_single_step_scores.sh", "single-step scores", ("scores",), compute_single_step,
                     forwards_per_image=lambda step_nb: 3),
    PerturbationTask(SANITY_TASK, "get_sanity_scores.sh", "sanity checks",
                     ("mprt_rho", "mprt_ssim", "class_rho", "randomised_maps", "noise_rho", "noise_ssim",
                      "input_rho"),
                     # 16, as before the input-invariance pass (about 2 more): the chunks, whose first image seeds
                     # a random-vector model's draws, stay those of the sets computed before it
                     compute_sanity, forwards_per_image=lambda step_nb: 16,
                     options=(Option("sanity_stages", str, ",".join(SANITY_STAGES),
                                     "sanity: the stages re-initialised one after the other, cumulatively, "
                                     "comma-separated", run_defining=False,
                                     valid=lambda value: bool(value) and set(value.split(",")) <= set(SANITY_STAGES),
                                     expected=f"stages among {', '.join(SANITY_STAGES)}, comma-separated"),),
                     undefined_arrays={"mprt_ssim": maps_under_3x3, "noise_ssim": maps_under_3x3,
                                       "input_rho": alone_in_set}),
]}


def task(key):
    """The task registered under key; ValueError listing them otherwise."""
    if key not in TASKS:
        raise ValueError(f"the perturbation task must be one of {', '.join(TASKS)}, got '{key}'")
    return TASKS[key]
