"""The table of curve metrics: deletion, insertion and ROAD, docs/METHOD.md "DAUC and IAUC" and "ROAD".

A curve perturbs an image step by step in the order of its saliency and records the score of the predicted
class after each step; its column in the tables summarises the curve (the area under it, or its mean). One
entry says everything about a curve; its task (brnpa/metrics/tasks.py), its scores (brnpa/metrics/scores.py), the
contract tests and the tests' slow reference curve (tests/helpers.slow_curve) are made from it:
- key: the value of --attention_metrics and the files' name (attMetr<key>_<source>.npy); letters only;
- name: its column in the tables (DAUC, IAUC...), also the title of its plots;
- description: what its task computes, in a few words, for --help and messages;
- baseline: what a removed cell shows, a name of metrics.perturbation.FIXED_BASELINES ('mean': the mean
  colour, 'blur': the blurred image) or of metrics.perturbation.IMPUTERS ('linear': ROAD's noisy linear
  imputation, which fills the removed pixels from the ones left);
- insertion: False for deletion (start from the image, the chosen cells are removed), True for insertion
  (start from the baseline, the chosen cells of the image are put back);
- least_first: the order of the cells, most salient first (False) or least salient first (True);
- steps: 'cells', one step per cell or per --att_metrics_few_steps group of cells, or 'tenths', nine steps
  perturbing 10%, 20%, ..., 90% of the cells, each rounded up to whole cells;
- summary: 'area', the trapezoid area under the curve over its x axis, or 'mean', the mean score over the
  steps;
- noise: the standard deviation of the noise an imputer adds (0 for a fixed baseline), drawn per image from
  (--seed, test index);
- correlation: the name of its step-correlation column (DC, IC: the Pearson correlation between what each step
  did to the score and the saliency it perturbed), None for none;
- script: its own shell script (./<script> MODEL_ID); None: ./get_scores.sh <key> MODEL_ID runs it.

Its direction follows: the summary is better lower for deletion of the most salient cells first and for
insertion of the least salient first, higher otherwise. Adding a curve is one entry here; a
new baseline is one function in brnpa/metrics/perturbation.py and its line in the tests' BASELINES_BY_HAND. This
module imports no torch (trainVal.py --help reads it): what computes imports it when it runs.
"""
import dataclasses
from typing import Optional

STEP_RULES = ("cells", "tenths")
SUMMARIES = ("area", "mean")
# The steps of the 'tenths' rule: k tenths of the cells, k = 1..9.
TENTHS = range(1, 10)


@dataclasses.dataclass(frozen=True)
class CurveMetric:
    key: str
    name: str
    description: str
    baseline: str
    insertion: bool = False
    least_first: bool = False
    steps: str = "cells"
    summary: str = "area"
    noise: float = 0.0
    correlation: Optional[str] = None
    script: Optional[str] = None

    @property
    def lower_is_better(self):
        """Whether a lower summary is better: for a faithful saliency, removing the most salient cells first
        lowers the score fast, and putting the least salient cells back first raises it slowly."""
        return self.insertion == self.least_first

    @property
    def perturbed(self):
        """What happens to a cell, for plot labels."""
        return "inserted" if self.insertion else "deleted"

    @property
    def x_label(self):
        """The label of its plots' x axis."""
        if self.steps == "tenths":
            return f"share of the cells {self.perturbed} (k tenths, rounded up to whole cells)"
        return f"share of the map {self.perturbed}"

    def step_nb(self, cells_step_nb):
        """Its number of steps: the step plan's, cells_step_nb, for the 'cells' rule; 9 for the 'tenths' rule."""
        return cells_step_nb if self.steps == "cells" else len(TENTHS)

    def cell_counts(self, cell_nb):
        """The cells perturbed after each step, cumulated, for the 'tenths' rule: ceil(k * cell_nb / 10) for
        k = 1..9 (None for the 'cells' rule, whose steps are all of one size)."""
        if self.steps == "cells":
            return None
        return [-(-tenth * cell_nb // 10) for tenth in TENTHS]

    def refusal(self, cell_nb, cells_per_step):
        """None where maps of cell_nb cells give a curve that means something; else why not, in a few words. The
        'cells' rule needs two steps at least (the x axis of one point divides by zero, and its area is 0, the
        best DAUC there is); the 'tenths' rule needs 10 cells, so that every step perturbs more cells than the one
        before and the 90% step leaves one cell at least."""
        if self.steps == "cells" and cell_nb // cells_per_step < 2:
            return (f"its curve would have {cell_nb // cells_per_step} point ({cell_nb} cells, {cells_per_step} "
                    f"per step), and a curve needs 2 at least")
        if self.steps == "tenths" and cell_nb < len(TENTHS) + 1:
            counts = self.cell_counts(cell_nb)
            return (f"its steps would perturb {', '.join(map(str, counts))} of the {cell_nb} cells, not 10% to 90%: "
                    f"it needs maps of 10 cells at least")
        return None

    def undefined(self, curves):
        """The refusal of curves (N, T, 2) of (cells left, score) read back from a set made before the refusal
        existed: too few points, or a 'tenths' curve whose last step left no cell (fewer than 10 cells); None
        for curves that mean something."""
        points = curves.shape[1]
        if self.steps == "cells" and points < 2:
            return f"its curves have {points} point (a curve needs 2 at least)"
        if self.steps == "tenths" and points and (curves[:, -1, 0] < 1).any():
            return "its maps have fewer than 10 cells (the 90% step perturbed every cell)"
        return None

    def step_words(self, cell_nb, cells_per_step):
        """How much its steps perturb, for the line a task prints: '16 steps of 1 cells', or the cells each
        'tenths' step really perturbs (rounded up)."""
        if self.steps == "cells":
            return f"{cell_nb // cells_per_step} steps of {cells_per_step} cell{'s' if cells_per_step > 1 else ''}"
        return (f"{len(TENTHS)} steps perturbing {', '.join(map(str, self.cell_counts(cell_nb)))} of the {cell_nb} "
                f"cells: 10% to 90%, rounded up")

    def x_axis(self, cells_left):
        """The x of each point of a curve, from its cells left (T,) (metrics.auc)."""
        from brnpa.metrics.auc import deletion_x, insertion_x, tenths_x
        if self.steps == "tenths":
            return tenths_x(cells_left)
        return insertion_x(cells_left) if self.insertion else deletion_x(cells_left)

    def summarise(self, curve):
        """The column's value of one curve (T, 2) of (cells left, score)."""
        import numpy as np
        from brnpa.metrics.auc import curve_auc
        if self.summary == "mean":
            return float(np.asarray(curve, dtype=np.float64)[:, 1].mean())
        if len(curve) < 2:  # no area under one point (refused when computed: refusal)
            return float("nan")
        return curve_auc(curve, self.x_axis)

    def records(self, forward, images, saliencies, classes, cells_per_step, batch_size, order=None,
                image_seeds=None):
        """Its curves, start scores and step saliencies of the images (metrics.perturbation.perturbation_records;
        order: None for metrics.perturbation.step_masks). image_seeds: one seed sequence per image (e.g.
        (--seed, test index)) for the noise of an imputer; needed where noise > 0."""
        import numpy as np
        from brnpa.metrics.perturbation import copies_maker, perturbation_records, step_masks
        if self.noise and image_seeds is None:
            raise ValueError(f"the {self.name} curves draw noise: they need one seed per image")

        def copies(position, image):
            rng = np.random.default_rng(image_seeds[position]) if self.noise else None
            return copies_maker(image, self.baseline, self.insertion, self.noise, rng)
        return perturbation_records(forward, images, saliencies, classes, copies, cells_per_step, batch_size,
                                    order or step_masks, self.least_first, self.cell_counts)


CURVE_METRICS = {metric.key: metric for metric in [
    CurveMetric("Del", "DAUC", "deletion curves", "mean", correlation="DC", script="get_dauc_scores.sh"),
    CurveMetric("Add", "IAUC", "insertion curves", "blur", insertion=True, correlation="IC",
                script="get_iauc_scores.sh"),
    # ROAD (Rong et al., ICML 2022): the most and the least relevant cells first, removed by noisy linear
    # imputation (noise 0.01, theirs), at 10% to 90% of the cells, summarised by the mean score
    CurveMetric("ROADMoRF", "ROAD MoRF", "ROAD curves, most relevant first", "linear", steps="tenths",
                summary="mean", noise=0.01),
    CurveMetric("ROADLeRF", "ROAD LeRF", "ROAD curves, least relevant first", "linear", least_first=True,
                steps="tenths", summary="mean", noise=0.01),
]}
