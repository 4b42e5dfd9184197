"""The table of perturbation tasks: what ./get_dauc_scores.sh, ./get_iauc_scores.sh and
./get_single_step_scores.sh compute, per image.

A task perturbs each evaluated test image as its saliency map says and saves per-image arrays, from which
the scores of metrics/scores.py are computed; trainVal.py --attention_metrics <key> runs it
(tasks/attention_metrics.py), which handles the images, the saliency sources, progress and the files. Each entry
states:
- key: the value of --attention_metrics, and the files' name attMetr<key>_<source>...;
- script: the shell script that runs it (./<script> MODEL_ID);
- description: what it computes, in a few words ('deletion curves'), for --help and messages;
- arrays: the per-image arrays it saves. The first goes to attMetr<key>_<source>.npy, each other one to
  attMetr<key>_<source>_<name in camelCase>.npy (runs/results_io.py); _imgInds, _preds, _targets and a .json of
  metadata are saved beside them for every task;
- compute(forward, images, saliencies, classes, cells_per_step, batch_size, order) -> {array name: list of
  one tensor per image}: forward maps (B, 3, H, W) to (B, class_nb) logits; images are (3, H, W), saliencies
  (h, w) in [0, 1], classes the predicted class of each image; order is the source's order of the cells
  (metrics.perturbation.step_masks or topk_step_masks);
- forwards_per_image(step_nb) -> the images it passes through the model per evaluated image (to size the
  chunks between two saves of progress);
- curve: the CurveMetric (metrics/curves.py) of a curve task, for the mean-curve plots; None otherwise.

Adding a task means writing its compute function, adding one PerturbationTask here and its script; its
scores go to metrics/scores.py.
"""
import dataclasses
from typing import Callable, Optional

from metrics.curves import CURVE_METRICS, CurveMetric
from metrics.faithfulness import single_step_scores
from metrics.perturbation import perturbation_records


@dataclasses.dataclass(frozen=True)
class PerturbationTask:
    key: str
    script: str
    description: str
    arrays: tuple
    compute: Callable
    forwards_per_image: Callable
    curve: Optional[CurveMetric] = None


def curve_task(metric, script, description):
    """The task that computes the curves of a CurveMetric: the curves (N, T, 2), the start image's score (N,)
    and the saliency each step perturbs (N, T) (metrics.perturbation.perturbation_records)."""
    def compute(forward, images, saliencies, classes, cells_per_step, batch_size, order):
        return perturbation_records(forward, images, saliencies, classes, metric.substrate, cells_per_step,
                                    batch_size, order)
    return PerturbationTask(metric.key, script, description, ("curves", "start_scores", "step_saliency"), compute,
                            forwards_per_image=lambda step_nb: step_nb + 1, curve=metric)


def compute_single_step(forward, images, saliencies, classes, cells_per_step, batch_size, order):
    """The single-step task: scores (N, 3) of the clean, kept and removed images (cells and order unused)."""
    return {"scores": single_step_scores(forward, images, saliencies, classes, batch_size)}


TASKS = {task.key: task for task in [
    curve_task(CURVE_METRICS["Del"], "get_dauc_scores.sh", "deletion curves"),
    curve_task(CURVE_METRICS["Add"], "get_iauc_scores.sh", "insertion curves"),
    PerturbationTask("Single", "get_single_step_scores.sh", "single-step scores", ("scores",), compute_single_step,
                     forwards_per_image=lambda step_nb: 3),
]}


def task(key):
    """The task registered under key; ValueError listing them otherwise."""
    if key not in TASKS:
        raise ValueError(f"the perturbation task must be one of {', '.join(TASKS)}, got '{key}'")
    return TASKS[key]
