"""The table of scores: the columns processResults.py computes from the files of the perturbation tasks.

A score turns the per-image arrays one task saved (brnpa/metrics/tasks.py) into one value per image; its column
in the tables is the mean over the images, with a 95% interval. Each entry states:
- name: its column (DAUC, IAUC...);
- key: its summary files attMetrics_<key>.csv, attMetrics_<key>_pop.csv and plot ttest_<key>.png;
- task: the key of the task whose files it reads;
- needs: the arrays of that task it reads (a set written without one of them gets a note, not a number);
- per_image: {array name: (N, ...) numpy array} -> (N,) float64 values;
- lower_is_better: its direction; None for a score that has none (class ρ), shown for information and left
  out of the comparisons;
- denominator (optional): for a ratio, {array name: array} -> (N,) per-image values it divides by. Where one
  is tiny a single image can dominate the mean: processResults.py counts such images and shows the median
  beside the mean;
- note (optional): one line under the table saying how to read the column, printed where it has values.

The columns of the curves (brnpa/metrics/curves.py) are made from their entries (curve_scores): a curve adds its
summary and, where it has one, its step correlation. Adding another score means writing its per_image function
and adding one Score here.
"""
import dataclasses
import functools
from typing import Callable, Optional

import numpy as np

from brnpa.metrics.curves import CURVE_METRICS
from brnpa.metrics.faithfulness import (average_drop, average_drop_in_deletion, clean_scores, increase_in_confidence,
                                        step_correlations)


@dataclasses.dataclass(frozen=True)
class Score:
    name: str
    key: str
    task: str
    needs: tuple
    per_image: Callable
    lower_is_better: Optional[bool]
    denominator: Optional[Callable] = None
    note: Optional[str] = None

    @property
    def direction(self):
        if self.lower_is_better is None:
            return "no direction, information only"
        return "lower is better" if self.lower_is_better else "higher is better"

    @property
    def arrow(self):
        return "" if self.lower_is_better is None else "↓" if self.lower_is_better else "↑"


def curve_summaries(metric):
    """per_image of a curve's column: arrays['curves'] (N, T, 2) -> (N,) summaries of metric (a CurveMetric)."""
    def per_image(arrays):
        return np.array([metric.summarise(curve) for curve in arrays["curves"]], dtype=np.float64)
    return per_image


def curve_scores():
    """The columns of the curve metrics, the summaries first (DAUC, IAUC, ...), then the step correlations (DC,
    IC): a summary is keyed by its curve's key, a correlation by its name. A correlation is higher-is-better:
    what each step did to the score (a fall for deletion, a rise for insertion) follows the saliency it
    perturbed."""
    summaries = [Score(metric.name, metric.key, metric.key, ("curves",), curve_summaries(metric),
                       lower_is_better=metric.lower_is_better) for metric in CURVE_METRICS.values()]
    correlations = [Score(metric.correlation, metric.correlation, metric.key,
                          ("curves", "start_scores", "step_saliency"),
                          functools.partial(step_correlations, deletion=not metric.insertion), lower_is_better=False)
                    for metric in CURVE_METRICS.values() if metric.correlation]
    return summaries + correlations


SCORES = {score.name: score for score in [
    *curve_scores(),
    Score("AD", "AD", "Single", ("scores",), average_drop, lower_is_better=True, denominator=clean_scores),
    Score("IIC", "IIC", "Single", ("scores",), increase_in_confidence, lower_is_better=False),
    Score("ADD", "ADD", "Single", ("scores",), average_drop_in_deletion, lower_is_better=False,
          denominator=clean_scores),
    Score("MPRT ρ", "MPRTrho", "Sanity", ("mprt_rho",), lambda arrays: arrays["mprt_rho"][:, -1],
          lower_is_better=True),
    Score("MPRT SSIM", "MPRTssim", "Sanity", ("mprt_ssim",), lambda arrays: arrays["mprt_ssim"][:, -1],
          lower_is_better=True),
    Score("class ρ", "ClassRho", "Sanity", ("class_rho",), lambda arrays: arrays["class_rho"], lower_is_better=None,
          note="class ρ: the rank correlation between a source's map for the predicted class and for another class; "
               "1.0 for a map that does not depend on the class (the models' own maps, the floors), lower for one "
               "that does"),
    # no direction: a low value is needed (a map that follows the image), not better (two images of one class
    # may rightly share a map)
    Score("input ρ", "InputRho", "Sanity", ("input_rho",), lambda arrays: arrays["input_rho"], lower_is_better=None,
          note="input ρ: the rank correlation between the maps of two different test images (pairs drawn with "
               "--seed); near 1 for a map that ignores the image (the centre floor), low for one that follows it"),
]}
