"""The table of curve metrics: deletion (DAUC) and insertion (IAUC), docs/METHOD.md "DAUC and IAUC".

A curve metric perturbs an image step by step, most salient cells first, and records the score of the
predicted class after each step; its number is the area under that curve. Each entry states:
- key: its name in the result files (attMetr<key>_<source>.npy) and in --attention_metrics;
- name: its column in the tables (DAUC, IAUC);
- substrate: image (3, H, W) -> (start image, what a chosen cell becomes), metrics.perturbation;
- x_axis: cells left (T,) -> x (T,), metrics.auc;
- lower_is_better: its direction;
- script: the shell script that computes it (./<script> MODEL_ID);
- perturbed: what happens to a cell ('deleted', 'inserted'), for plot labels.

processResults.py, runs.py, run_models.py and args.py read this table. Adding a curve metric means
writing its substrate (and x axis) and adding one CurveMetric here, plus its script.
"""
import dataclasses
from typing import Callable

from metrics.auc import curve_auc, deletion_x, insertion_x
from metrics.perturbation import deletion_substrate, insertion_substrate


@dataclasses.dataclass(frozen=True)
class CurveMetric:
    key: str
    name: str
    substrate: Callable
    x_axis: Callable
    lower_is_better: bool
    script: str
    perturbed: str

    @property
    def direction(self):
        return "lower is better" if self.lower_is_better else "higher is better"

    def auc(self, curve):
        """Area under one curve (T, 2) of (cells left, score)."""
        return curve_auc(curve, self.x_axis)


CURVE_METRICS = {metric.key: metric for metric in [
    CurveMetric("Del", "DAUC", deletion_substrate, deletion_x, lower_is_better=True, script="get_dauc_scores.sh",
                perturbed="deleted"),
    CurveMetric("Add", "IAUC", insertion_substrate, insertion_x, lower_is_better=False, script="get_iauc_scores.sh",
                perturbed="inserted"),
]}


def curve_metric(key):
    """The curve metric registered under key; ValueError listing them otherwise."""
    if key not in CURVE_METRICS:
        raise ValueError(f"curve metric must be one of {', '.join(CURVE_METRICS)}, got '{key}'")
    return CURVE_METRICS[key]
