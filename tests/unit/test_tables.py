"""Contract tests: every entry of every extension table (heads, saliency sources, curve metrics,
localisation scores, model ids, options) goes through the interface the rest of the code relies on.
A new entry is tested here as soon as it is registered."""
import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from brnpa.runs import results_io
from brnpa.runs.args import OPTIONS, SEARCHABLE, parse_args
from helpers import REPO_ROOT, slow_curve, tiny_model
from brnpa.metrics.curves import CURVE_METRICS, STEP_RULES, SUMMARIES
from brnpa.metrics.localisation import LOCALISATION_SCORES
from brnpa.metrics.perturbation import FIXED_BASELINES, IMPUTERS, released_saliency_map, saliency_map, step_masks
from brnpa.metrics.saliency import POST_HOC_NAMES, RESOLUTIONS, SOURCES, SourceInputs, live_own_maps
from brnpa.metrics.scores import SCORES
from brnpa.metrics.tasks import GENERIC_SCRIPT, TASKS, TaskContext
from brnpa.core.model_ids import MODEL_IDS, model_options
from brnpa.models.heads import HEADS
from brnpa.models.resnet import ARCHITECTURES


@pytest.mark.parametrize("head", HEADS)
def test_every_head_through_the_model(head):
    """A head's pooled vector has out_dim features (the classifier's input), its maps are at the feature-map
    size, combine_maps turns them into one map per image, and a step trains it."""
    torch.manual_seed(0)
    model = tiny_model(head=head)
    images, target = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    features = model.backbone(images)
    pooled, maps = model.head(features, model.classifier)
    assert pooled.shape == (2, model.head.out_dim) == (2, model.classifier.in_features)
    assert maps.shape[0] == 2 and maps.shape[2:] == features.shape[2:]
    combined = HEADS[head].combine_maps(maps)
    assert combined.shape == (2, *features.shape[2:])
    for one_image in maps:  # the saved arrays are per image: (M, h, w) -> (h, w)
        assert HEADS[head].combine_maps(one_image).shape == features.shape[2:]
        as_saved = (one_image / one_image.max().clamp_min(1e-12) * 255).round().to(torch.uint8)
        norm = torch.full((1, *features.shape[2:]), 7, dtype=torch.uint8)
        for saliency in (saliency_map(as_saved, norm, HEADS[head]),
                         released_saliency_map(as_saved, norm, HEADS[head].combine_maps)):
            assert saliency.shape == features.shape[2:] and 0 <= saliency.min() and saliency.max() <= 1
    loss = torch.nn.functional.cross_entropy(model(images)["output"], target)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# Three 2x2 maps of one image, and each head's combined map worked out by hand: a new head adds its line.
MAPS = [[[1., 2.], [3., 4.]], [[5., 6.], [7., 8.]], [[0., 3.], [3., 0.]]]
COMBINED_BY_HAND = {
    "cnn": [[1., 2.], [3., 4.]],  # its one map, the first
    "b_cnn": [[2., 11 / 3], [13 / 3, 4.]],  # the mean of the maps: (1 + 5 + 0) / 3, (2 + 6 + 3) / 3, ...
    "br_npa": [[1., 2.], [3., 4.]],  # the map of the most active vector, the first
}


# The saliency (before min-max scaling) of those maps with the feature norm NORM, by hand: a new head adds its line.
NORM = [[[2., 1.], [1., 2.]]]
SALIENCY_BY_HAND = {
    "cnn": [[2., 2.], [3., 8.]],  # combined map x norm
    "b_cnn": [[4., 11 / 3], [13 / 3, 8.]],
    "br_npa": [[2., 2.], [3., 8.]],
}


@pytest.mark.parametrize("head", HEADS)
def test_every_head_combines_its_maps_as_worked_by_hand(head):
    """One image (M, h, w) and a batch (B, M, h, w) give the hand-worked combined map and saliency."""
    assert head in COMBINED_BY_HAND, f"add the combined map of head '{head}' worked out by hand"
    assert head in SALIENCY_BY_HAND, f"add the saliency of head '{head}' worked out by hand"
    maps, norm = torch.tensor(MAPS), torch.tensor(NORM)
    for table, compute in ((COMBINED_BY_HAND, lambda m, n: HEADS[head].combine_maps(m)),
                           (SALIENCY_BY_HAND, HEADS[head].saliency)):
        expected = torch.tensor(table[head])
        assert torch.allclose(compute(maps, norm), expected)
        batch = compute(torch.stack([maps, maps * 2]), torch.stack([norm, norm]))
        assert torch.allclose(batch, torch.stack([expected, expected * 2]))


@pytest.mark.parametrize("head", HEADS)
def test_every_head_has_a_model_id(head):
    assert any(parse_args(model_options(model_id)).head == head for model_id in MODEL_IDS)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_model_id_parses(model_id):
    options = parse_args(["--model_id", model_id, *model_options(model_id)])
    assert options.head in HEADS and options.model_id == model_id


def test_legacy_head_options_map_onto_head():
    assert parse_args(["--attention", "False"]).head == "cnn"
    assert parse_args(["--attention", "True", "--br_npa", "False"]).head == "b_cnn"
    assert parse_args([]).head == "br_npa"
    bcnn = parse_args(["--head", "b_cnn"])
    assert (bcnn.attention, bcnn.br_npa) == (True, False)  # the .ini describes one head
    from brnpa.runs.args import resolve_derived, with_changes
    other = resolve_derived(with_changes(parse_args([]), head="cam"))  # a head the pair cannot describe
    assert (other.head, other.attention, other.br_npa) == ("cam", None, None)
    assert parse_args(["--attention", "None", "--head", "cnn"]).attention is False  # None reads back from an .ini


def call_as_the_tasks(source, inputs, model, images, classes, indices):
    """A source called as the perturbation and sanity tasks call it: built by SourceInputs through
    source.function (which enables gradients where the entry says gradients=True), called under
    torch.no_grad() (the tasks' whole computation, jobs/attention_metrics.compute_and_save_curves, runs under
    it) on a model in eval mode."""
    saliency = source.function(inputs)
    with torch.no_grad():
        return saliency(model.eval(), images, classes, indices)


def plain_gradient(inputs):
    """A source's builder: the gradient of the logit, summed over the channels (B, H, W)."""
    def saliency(model, images, classes, indices):
        images = images.clone().requires_grad_(True)
        logits = model(images)["output"]
        return torch.autograd.grad(logits[range(len(images)), classes].sum(), images)[0].abs().sum(1)
    return saliency


def test_a_source_that_does_not_say_it_needs_gradients_fails_the_contract():
    """The plain gradient registered without gradients=True: called as the tasks call it, it fails; with it, it
    gives the gradient computed here outside torch.no_grad()."""
    from brnpa.metrics.saliency import SaliencySource
    model = tiny_model(head="cnn", class_nb=3).eval()
    images = torch.randn(2, 3, 32, 32)
    forgetful = SaliencySource("mygradient", plain_gradient, "the gradient", resolution="pixels")
    with pytest.raises(RuntimeError):
        call_as_the_tasks(forgetful, SourceInputs({}), model, images, [0, 1], [0, 1])
    declared = SaliencySource("mygradient", plain_gradient, "the gradient", gradients=True, resolution="pixels")
    expected = plain_gradient(None)(model, images, [0, 1], [0, 1])
    assert torch.equal(call_as_the_tasks(declared, SourceInputs({}), model, images, [0, 1], [0, 1]), expected)


# Option values that keep a source's unit test fast; the interface is the same with the defaults.
FAST_VALUES = {"rise_masks": 16, "ig_steps": 4, "smoothgrad_samples": 2}


@pytest.mark.parametrize("name", SOURCES)
def test_every_saliency_source(name, tmp_path):
    """A source's options are options of trainVal.py that do not define a run; what identifies its results is
    among its values; built from SourceInputs and called as the tasks call it (call_as_the_tasks), it gives one
    map per image at its declared resolution: the model's map size ('map') or the image's ('pixels')."""
    source = SOURCES[name]
    for option in source.options:
        assert OPTIONS[option.name] is option and not option.run_defining
    values = {option.name: option.default for option in source.options}
    values.update(seed=0, batch_size=8, val_batch_size=4)
    values.update({key: value for key, value in FAST_VALUES.items() if key in values})
    given_size = (3, 5)  # precomputed maps (a source whose resolution is 'given'): of 5 test images, 3 x 5 each
    if "maps" in values:
        values["test_files"] = [f"c/{index}.png" for index in range(5)]
        values["maps"] = str(tmp_path / "maps.npy")
        np.save(values["maps"], np.random.default_rng(0).random((5, *given_size)))
    assert set(source.identity) <= set(values)
    assert source.resolution in RESOLUTIONS
    torch.manual_seed(0)
    model = tiny_model(head="br_npa", class_nb=3).eval()
    images = torch.randn(2, 3, 32, 32)
    map_size = model(images)["att_maps"].shape[2:]
    generator = torch.Generator().manual_seed(0)
    att_maps = torch.randint(0, 256, (5, 3, *map_size), dtype=torch.uint8, generator=generator)
    norms = torch.randint(0, 256, (5, 1, *map_size), dtype=torch.uint8, generator=generator)
    inputs = SourceInputs(values, att_maps, norms, HEADS["br_npa"], test_images=lambda: [images])
    maps = call_as_the_tasks(source, inputs, model, images, [0, 2], [3, 4])
    size = {"map": map_size, "pixels": images.shape[2:], "given": given_size}[source.resolution]
    assert maps.shape == (2, *size) and torch.isfinite(maps).all()
    assert source.post_hoc == (name in POST_HOC_NAMES)
    if source.post_hoc:  # its results are '<model_id>-<name>': the name must read back from a file name
        assert re.fullmatch(r"[a-z0-9]+", name)
        assert results_io.parse_source_id(f"my_model-{name}", POST_HOC_NAMES) == ("my_model", name)


# The x axis of each step rule, worked by hand on 7 cells taken 2 at a time (cells left 5, 3, 1; the 'cells'
# rule's deletion and insertion axes differ there) and on the nine 'tenths' steps.
X_BY_HAND = {
    ("cells", False): [0, 0.5, 1],  # deletion: 1 - (left - 1) / 4
    ("cells", True): [0, 0.4, 0.8],  # insertion: 1 - left / 5
    ("tenths", False): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    ("tenths", True): [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
}
# The cells left after each step of the 'tenths' rule on 7 cells: ceil(0.7), ceil(1.4), ... perturbed.
TENTHS_LEFT_OF_7 = [6, 5, 4, 4, 3, 2, 2, 1, 0]


@pytest.mark.parametrize("key", CURVE_METRICS)
def test_every_curve_metric_against_the_slow_curve(key):
    """A curve metric's curves, computed as its task computes them (batched, several images), equal the slow
    curve its entry describes (tests/helpers.slow_curve: its baseline by hand, deletion or insertion, its
    order and step rule), its noise set to 0; its x axis and summary are the hand-worked ones; and a curve that
    draws noise draws it per image, from the image's seed alone."""
    metric = dataclasses.replace(CURVE_METRICS[key], noise=0.0)
    assert re.fullmatch(r"[A-Za-z]+", key) and metric.name and metric.description
    assert metric.baseline in {*FIXED_BASELINES, *IMPUTERS} and metric.steps in STEP_RULES
    assert metric.summary in SUMMARIES and (metric.noise == 0 or metric.baseline in IMPUTERS)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    # non-square images and maps (8 x 12 pixels, 2 x 3 cells of 4 x 4 pixels): a height and a width swapped fails
    images, saliencies = list(torch.randn(3, 3, 8, 12)), [torch.rand(2, 3) for _ in range(3)]
    with torch.no_grad():
        classes = model(torch.stack(images)).argmax(dim=1).tolist()
        # the entry as declared, and with deletion and insertion swapped: every baseline, the imputer included, is
        # built both ways (no entry inserts with an imputer yet)
        for variant in (metric, dataclasses.replace(metric, insertion=not metric.insertion)):
            curves = variant.records(model, images, saliencies, classes, 1, 5,
                                     image_seeds=[[0, i] for i in range(3)])
            for image, saliency, curve in zip(images, saliencies, curves["curves"]):
                assert torch.allclose(curve.double(), slow_curve(model, image, saliency, variant, 1), atol=1e-5)
    left = [5, 3, 1] if metric.steps == "cells" else TENTHS_LEFT_OF_7
    assert metric.x_axis(np.array(left)) == pytest.approx(X_BY_HAND[metric.steps, metric.insertion])
    constant = np.array([[cells, 1.] for cells in left])
    expected = X_BY_HAND[metric.steps, metric.insertion][-1] - X_BY_HAND[metric.steps, metric.insertion][0]
    assert metric.summarise(constant) == pytest.approx(expected if metric.summary == "area" else 1.0)
    if CURVE_METRICS[key].noise:
        noisy = CURVE_METRICS[key]
        with torch.no_grad():
            def first_curve(seeds, image_nb):
                return noisy.records(model, images[:image_nb], saliencies[:image_nb], classes[:image_nb], 1, 2,
                                     image_seeds=seeds)["curves"][0]
            assert torch.equal(first_curve([[0, 0]], 1), first_curve([[0, 0], [0, 1]], 2))
            assert not torch.equal(first_curve([[0, 0]], 1), first_curve([[1, 0]], 1))


def mean_forward(images):
    """A two-class 'model' whose class-0 logit is the image's mean."""
    return torch.stack([images.mean(dim=(1, 2, 3)), torch.zeros(len(images))], dim=1)


def task_context(task, images):
    """The TaskContext a task's compute gets for the images, test indices 0, 1...: a tiny CNN (4x4 maps at 64 px)
    and its live own maps, the task's option defaults, the images as the set (class 0 predicted for each)."""
    model = tiny_model(head="cnn", resnet_stride=1).eval()
    return TaskContext(model, live_own_maps(HEADS["cnn"]), list(range(len(images))), 0,
                       {option.name: option.default for option in task.options}, tuple(range(len(images))),
                       lambda indices: (torch.stack([images[i] for i in indices]), [0] * len(indices)))


def task_arrays(task, image_nb=3):
    """A task's arrays on image_nb random images (8x8 with 2x2 saliencies; 64x64, the tiny model's input, for a
    task with options, the sanity task), stacked as the task saves them."""
    torch.manual_seed(0)
    side = 64 if task.options else 8
    images, saliencies = list(torch.rand(image_nb, 3, side, side)), list(torch.rand(image_nb, 2, 2))
    computed = task.compute(mean_forward, images, saliencies, [0] * image_nb, 1, 3, step_masks,
                            task_context(task, images))
    assert set(computed) == set(task.arrays)
    assert all(len(values) == image_nb for values in computed.values())
    return {name: torch.stack(values).numpy() for name, values in computed.items()}


@pytest.mark.parametrize("key", TASKS)
def test_every_task(key):
    """A task's script runs it, --attention_metrics offers it, and its compute gives one value of every array
    per image (a curve task: one point per step)."""
    task = TASKS[key]
    assert re.fullmatch(r"[A-Za-z]+", key), "task keys are letters only: file names are parsed as attMetr<key>_"
    script_name = task.script or GENERIC_SCRIPT
    script = os.path.join(REPO_ROOT, script_name)
    assert os.access(script, os.X_OK), f"{script_name} is not executable"
    with open(script) as file:
        assert (f"--attention_metrics {key}" if task.script else '--attention_metrics "$1"') in file.read()
    assert key in OPTIONS["attention_metrics"].choices and task.description
    assert task.forwards_per_image(4) >= 1
    arrays = task_arrays(task)
    if task.curve is not None:  # 2x2 maps: 4 steps of 1 cell, or ceil(0.4), ceil(0.8), ... cells
        left = [3, 2, 1, 0] if task.curve.steps == "cells" else [3, 3, 2, 2, 2, 1, 1, 0, 0]
        assert arrays["curves"].shape == (3, len(left), 2) and arrays["curves"][0, :, 0].tolist() == left
    paths = results_io.att_metrics_paths("exp", "my_model", key)
    assert set(task.arrays) | {"img_inds", "preds", "targets", "meta"} == set(paths)
    assert len(set(paths.values())) == len(paths)


def top_left_forward(images):
    """A two-class 'model' that looks at the top-left quarter of 8x8 images: class 0's logit is 8 x (mean of the
    top-left 4x4 block - mean of the rest)."""
    corner = torch.zeros(8, 8, dtype=torch.bool)
    corner[:4, :4] = True
    logit = 8 * (images[..., corner].mean(dim=-1) - images[..., ~corner].mean(dim=-1)).mean(dim=1)
    return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def top_left_texture_forward(images):
    """A two-class 'model' that reads the texture of the top-left quarter of 8x8 images: class 0's logit is
    8 x (the standard deviation of the top-left 4x4 block, mean over the channels) - 2. Every curve baseline
    (the mean colour, a blur, an imputation from the neighbours) smooths a removed block, so the score falls
    when the block is removed, whatever the baseline."""
    logit = 8 * images[..., :4, :4].flatten(start_dim=-2).std(dim=-1).mean(dim=1) - 2
    return torch.stack([logit, torch.zeros_like(logit)], dim=1)


# Saliencies of the 2x2 cells of the images above: the faithful one ranks the top-left cell first, the
# unfaithful one last (distinct values, so that no correlation is undefined).
FAITHFUL = torch.tensor([[1.0, 0.3], [0.2, 0.1]])
UNFAITHFUL = torch.tensor([[0.1, 0.3], [0.2, 1.0]])


# The sanity scores measure whether a map depends on the model, not how faithful it is: tests/unit/test_sanity.py
# checks them (a map that ignores the model keeps ρ = 1, one that depends on it does not).
FAITHFULNESS_SCORES = [name for name, score in SCORES.items() if score.task != "Sanity"]


@pytest.mark.parametrize("name", FAITHFULNESS_SCORES)
def test_every_score_prefers_the_faithful_saliency(name):
    """On images whose class depends on the top-left cell only, each score ranks the saliency that points there
    above the one that points away, on every image, in its stated direction. The curves' scores are checked on
    the texture model (any baseline removes a texture), the single-step ones on the mean model (whose kept
    image, the rest of the image darkened, raises the score, which IIC needs)."""
    score = SCORES[name]
    task = TASKS[score.task]
    assert score.task in TASKS and set(score.needs) <= set(task.arrays)
    forward = top_left_forward if task.curve is None else top_left_texture_forward
    torch.manual_seed(0)
    images = list(torch.rand(4, 3, 8, 8))
    context = TaskContext(None, None, list(range(4)), 0, {}, tuple(range(4)))

    def values(saliency):
        computed = task.compute(forward, images, [saliency] * 4, [0] * 4, 1, 5, step_masks, context)
        values = score.per_image({name: torch.stack(per_image).numpy() for name, per_image in computed.items()})
        assert values.shape == (4,) and np.all(np.isfinite(values))
        return values
    faithful, unfaithful = values(FAITHFUL), values(UNFAITHFUL)
    assert np.all(faithful < unfaithful) if score.lower_is_better else np.all(faithful > unfaithful), \
        (faithful, unfaithful)


def test_score_keys_are_distinct():
    assert len({score.key for score in SCORES.values()}) == len(SCORES)


@pytest.mark.parametrize("name", LOCALISATION_SCORES)
def test_every_localisation_score(name):
    """1 when all the saliency is on the part, 0 when none of it is (a 2x2 map on a 4x4 mask)."""
    score = LOCALISATION_SCORES[name]
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # the top-left cell
    assert score(np.array([[1., 0.], [0., 0.]]), mask) == pytest.approx(1.0)
    assert score(np.array([[0., 1.], [1., 1.]]), mask) == pytest.approx(0.0)


# Option defaults the README and docs/METHOD.md state (the authors' values where the paper has them).
DOCUMENTED_DEFAULTS = {
    "seed": 1, "resnet_stride": 2, "stride_lay2": 2, "nb_att_maps": 3, "end_relu": True, "big_images": True,
    "optim": "SGD", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0, "use_scheduler": True, "batch_size": 12,
    "dropout": 0.0, "lin_lay_bias": False, "epochs": 50, "max_batch_size_single_pass": 12,
    "dataset_val": "CUB-200-2011_train", "hflip": True, "amp": True, "amp_eval": False, "sync_bn": False,
    "br_npa_randvec": False, "br_npa_norefine": False, "aux_on_masked": False, "master_net": False,
    "released_batch_cut": False, "released_split": False, "progress_interval": 30.0,
    "optuna_trial_nb": 25, "opt_data_aug": True, "optuna_pruner": "none", "optuna_heartbeat": 30,
    "resume": True, "overwrite": False, "att_metrics_img_nb": 100, "att_metrics_few_steps": False,
    "att_metrics_batch_size": 64, "att_metrics_saliency": "float", "rise_masks": 4000, "rise_grid": 7,
    "rise_keep_prob": 0.5, "ig_steps": 50, "smoothgrad_samples": 5, "smoothgrad_noise": 1.0, "occlusion_cells": 1.0,
    "occlusion_stride_cells": 0.5,
}
# What config_cub.config sets on top: the authors' CUB setting (docs/METHOD.md, "Training").
AUTHORS_CUB = {"backbone": "resnet50", "pretrained": True, "img_size": 448, "stride_lay3": 1, "stride_lay4": 1,
               "class_nb": 200, "seed": 1, "optim": "SGD", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0,
               "batch_size": 12, "dropout": 0.0, "use_scheduler": True, "lin_lay_bias": False, "epochs": 50,
               "optuna_trial_nb": 25, "opt_data_aug": True, "nb_att_maps": 3}


@pytest.mark.parametrize("name", DOCUMENTED_DEFAULTS)
def test_documented_option_defaults(name):
    assert OPTIONS[name].default == DOCUMENTED_DEFAULTS[name]


def test_config_cub_is_the_authors_setting():
    resolved = vars(parse_args(["-c", os.path.join(REPO_ROOT, "config_cub.config")]))
    assert {name: resolved[name] for name in AUTHORS_CUB} == AUTHORS_CUB


def test_every_option_has_help_and_a_valid_default():
    for name, option in OPTIONS.items():
        assert option.check(option.default) is None, name
        assert not option.searchable or option.run_defining, name
        assert option.help or option.choices, f"--{name} has no help"


def test_searched_options_are_the_ones_docs_method_lists():
    """The parameters of the search table in docs/METHOD.md, "Search", are the options with a SearchSpace, in
    the table's order (the sampling order)."""
    with open(os.path.join(REPO_ROOT, "docs", "METHOD.md")) as file:
        section = file.read().split("## Search")[1].split("\n## ")[0]
    documented = re.findall(r"^\| (\w+)(?: \([^|]*\))? \|", section, flags=re.M)
    assert documented[0] == "parameter" and documented[1:] == list(SEARCHABLE)
    assert all(OPTIONS[name].search.kind in ("float", "int", "categorical") for name in SEARCHABLE)


def test_help_imports_no_torch():
    """The option tables of trainVal.py and processResults.py import without torch (so --help is fast): a
    table module that imports torch at its top fails here."""
    code = ("import sys; import brnpa.runs.args, processResults; processResults.build_parser(); "
            "brnpa.runs.args.build_parser(); print(sorted(name for name in ('torch', 'numpy') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("name,table", [("head", HEADS), ("backbone", ARCHITECTURES)])
def test_a_name_outside_its_table_is_refused_with_the_names(name, table, capsys):
    """--head and --backbone are checked against the imported tables once parsed (not for --help): every key of
    the table is accepted, another name is refused with the list."""
    for key in table:
        assert OPTIONS[name].check(key) is None
    with pytest.raises(SystemExit):
        parse_args([f"--{name}", "nosuch"])
    message = capsys.readouterr().err
    assert f"--{name} must be one of {', '.join(table)}" in message and "got nosuch" in message


@pytest.mark.parametrize("key", CURVE_METRICS)
@pytest.mark.parametrize("height,width,step_cells", [(1, 1, 1), (1, 2, 1), (2, 2, 2), (3, 3, 1), (2, 5, 1), (4, 4, 4)])
def test_a_curve_refuses_maps_with_too_few_cells(key, height, width, step_cells):
    """By hand: the 'cells' rule needs 2 steps (1 x 1 maps, or 4 cells in one step of 4, give one point, whose
    area is 0, the best DAUC there is); the 'tenths' rule needs 10 cells (on 3 x 3 maps the '90%' step perturbs
    all 9). A curve read back with too few points, or whose 90% step left no cell, is not a score either."""
    metric = CURVE_METRICS[key]
    cells = height * width
    refused = cells // step_cells < 2 if metric.steps == "cells" else cells < 10
    assert (metric.refusal(cells, step_cells) is not None) == refused
    steps = cells // step_cells if metric.steps == "cells" else 9
    counts = ([(step + 1) * step_cells for step in range(steps)] if metric.steps == "cells"
              else [int(np.ceil(k * cells / 10)) for k in range(1, 10)])
    curves = np.array([[[cells - count, 0.5] for count in counts]] * 2, dtype=np.float64)
    assert (metric.undefined(curves) is not None) == refused
    if metric.summary == "area" and steps < 2:
        assert np.isnan(metric.summarise(curves[0]))  # never 0 from a one-point curve
    if metric.steps == "tenths":
        assert ", ".join(map(str, counts)) in metric.step_words(cells, step_cells)
