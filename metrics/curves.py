"""The two curves: deletion and insertion, docs/METHOD.md "DAUC and IAUC".

A curve perturbs an image step by step, most salient cells first, and records the score of the predicted
class after each step; DAUC and IAUC are the areas under these curves (metrics/scores.py). Each entry states:
- key: the key of its task (metrics/tasks.py) and of its files (attMetr<key>_<source>.npy);
- name: the name of its area in the tables (DAUC, IAUC), also the title of its plots;
- substrate: image (3, H, W) -> (start image, what a chosen cell becomes), metrics.perturbation;
- x_axis: cells left (T,) -> x (T,), metrics.auc;
- perturbed: what happens to a cell ('deleted', 'inserted'), for plot labels.
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
    perturbed: str

    def auc(self, curve):
        """Area under one curve (T, 2) of (cells left, score)."""
        return curve_auc(curve, self.x_axis)


CURVE_METRICS = {metric.key: metric for metric in [
    CurveMetric("Del", "DAUC", deletion_substrate, deletion_x, perturbed="deleted"),
    CurveMetric("Add", "IAUC", insertion_substrate, insertion_x, perturbed="inserted"),
]}
