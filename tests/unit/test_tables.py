"""Contract tests: every entry of every extension table (heads, saliency sources, curve metrics,
localisation scores, model ids, options) goes through the interface the rest of the code relies on.
A new entry is tested here as soon as it is registered."""
import os
import re

import numpy as np
import pytest
import torch

import results_io
from args import OPTIONS, SEARCHABLE, parse_args
from helpers import REPO_ROOT, tiny_model
from metrics.curves import CURVE_METRICS
from metrics.localisation import LOCALISATION_SCORES
from metrics.perturbation import released_saliency_map, saliency_map, step_masks
from metrics.saliency import POST_HOC_NAMES, SOURCES, SourceInputs
from metrics.scores import SCORES
from metrics.tasks import TASKS
from model_ids import MODEL_IDS, model_options
from models.heads import HEADS


@pytest.mark.parametrize("head", HEADS)
def test_every_head_through_the_model(head):
    """A head's pooled vector has out_dim features (the classifier's input), its maps are at the feature-map
    size, combine_maps turns them into one map per image, and a step trains it."""
    torch.manual_seed(0)
    model = tiny_model(head=head)
    images, target = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    features = model.backbone(images)
    pooled, maps = model.head(features)
    assert pooled.shape == (2, model.head.out_dim) == (2, model.classifier.in_features)
    assert maps.shape[0] == 2 and maps.shape[2:] == features.shape[2:]
    combined = HEADS[head].combine_maps(maps)
    assert combined.shape == (2, *features.shape[2:])
    for one_image in maps:  # the saved arrays are per image: (M, h, w) -> (h, w)
        assert HEADS[head].combine_maps(one_image).shape == features.shape[2:]
        as_saved = (one_image / one_image.max().clamp_min(1e-12) * 255).round().to(torch.uint8)
        norm = torch.full((1, *features.shape[2:]), 7, dtype=torch.uint8)
        for saliency in (saliency_map(as_saved, norm, HEADS[head].combine_maps),
                         released_saliency_map(as_saved, norm, HEADS[head].combine_maps)):
            assert saliency.shape == features.shape[2:] and 0 <= saliency.min() and saliency.max() <= 1
    loss = torch.nn.functional.cross_entropy(model(images)["output"], target)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


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


@pytest.mark.parametrize("name", SOURCES)
def test_every_saliency_source(name):
    """A source's options are options of trainVal.py that do not define a run; what identifies its results is
    among its values; built from SourceInputs, it gives one (h, w) map per image at the model's map size."""
    source = SOURCES[name]
    for option in source.options:
        assert OPTIONS[option.name] is option and not option.run_defining
    values = {option.name: option.default for option in source.options}
    values.update(seed=0, batch_size=8, val_batch_size=4)
    if name == "rise":
        values["rise_masks"] = 16  # the default 4000 is slow for a unit test; the interface is the same
    assert set(source.identity) <= set(values)
    torch.manual_seed(0)
    model = tiny_model(head="br_npa", class_nb=3).eval()
    images = torch.randn(2, 3, 32, 32)
    map_size = model(images)["att_maps"].shape[2:]
    generator = torch.Generator().manual_seed(0)
    att_maps = torch.randint(0, 256, (5, 3, *map_size), dtype=torch.uint8, generator=generator)
    norms = torch.randint(0, 256, (5, 1, *map_size), dtype=torch.uint8, generator=generator)
    saliency = source.build(SourceInputs(values, att_maps, norms, HEADS["br_npa"], test_images=lambda: [images]))
    maps = saliency(model, images, [0, 2], [3, 4])
    assert maps.shape == (2, *map_size) and torch.isfinite(maps).all()
    assert source.post_hoc == (name in POST_HOC_NAMES)
    if source.post_hoc:  # its results are '<model_id>-<name>': the name must read back from a file name
        assert re.fullmatch(r"[a-z0-9]+", name)
        assert results_io.parse_source_id(f"my_model-{name}", POST_HOC_NAMES) == ("my_model", name)


@pytest.mark.parametrize("key", CURVE_METRICS)
def test_every_curve_metric(key):
    """A curve's substrate keeps the image shape, its x axis runs from 0 to 1 and a constant score of 1 has an
    area of 1."""
    metric = CURVE_METRICS[key]
    image = torch.rand(3, 8, 8)
    start, chosen = metric.substrate(image)
    assert start.shape == chosen.shape == image.shape
    x = metric.x_axis(np.array([3, 2, 1, 0]))
    assert np.all(np.diff(x) > 0) and x[-1] == pytest.approx(1.0)
    assert metric.auc(np.array([[4, 1.], [3, 1.], [2, 1.], [1, 1.], [0, 1.]])) == pytest.approx(1.0)
    assert metric.name and metric.perturbed


def mean_forward(images):
    """A two-class 'model' whose class-0 logit is the image's mean."""
    return torch.stack([images.mean(dim=(1, 2, 3)), torch.zeros(len(images))], dim=1)


def task_arrays(task, image_nb=3):
    """A task's arrays on image_nb random 8x8 images with 2x2 saliencies, stacked as the task saves them."""
    torch.manual_seed(0)
    images, saliencies = list(torch.rand(image_nb, 3, 8, 8)), list(torch.rand(image_nb, 2, 2))
    computed = task.compute(mean_forward, images, saliencies, [0] * image_nb, 1, 3, step_masks)
    assert set(computed) == set(task.arrays)
    assert all(len(values) == image_nb for values in computed.values())
    return {name: torch.stack(values).numpy() for name, values in computed.items()}


@pytest.mark.parametrize("key", TASKS)
def test_every_task(key):
    """A task's script runs it, --attention_metrics offers it, and its compute gives one value of every array
    per image (a curve task: one point per step)."""
    task = TASKS[key]
    with open(os.path.join(REPO_ROOT, task.script)) as file:
        assert f"--attention_metrics {key}" in file.read()
    assert key in OPTIONS["attention_metrics"].choices and task.description
    assert task.forwards_per_image(4) >= 1
    arrays = task_arrays(task)
    if task.curve is not None:
        assert arrays["curves"].shape == (3, 4, 2) and arrays["curves"][0, :, 0].tolist() == [3, 2, 1, 0]
    paths = results_io.att_metrics_paths("exp", "my_model", key)
    assert set(task.arrays) | {"img_inds", "preds", "targets", "meta"} == set(paths)
    assert len(set(paths.values())) == len(paths)


@pytest.mark.parametrize("name", SCORES)
def test_every_score(name):
    """A score reads arrays its task saves and gives one finite value per image; its CSV names are its own."""
    score = SCORES[name]
    assert score.task in TASKS and set(score.needs) <= set(TASKS[score.task].arrays)
    values = score.per_image(task_arrays(TASKS[score.task]))
    assert values.shape == (3,) and np.all(np.isfinite(values))
    assert score.direction in ("lower is better", "higher is better")
    assert len({other.key for other in SCORES.values()}) == len(SCORES)


@pytest.mark.parametrize("name", LOCALISATION_SCORES)
def test_every_localisation_score(name):
    """1 when all the saliency is on the part, 0 when none of it is (a 2x2 map on a 4x4 mask)."""
    score = LOCALISATION_SCORES[name]
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # the top-left cell
    assert score(np.array([[1., 0.], [0., 0.]]), mask) == pytest.approx(1.0)
    assert score(np.array([[0., 1.], [1., 1.]]), mask) == pytest.approx(0.0)


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_default_is_valid(name):
    option = OPTIONS[name]
    assert option.check(option.default) is None
    assert not option.searchable or option.run_defining
    assert option.help or option.choices, f"--{name} has no help"


def test_searchable_options():
    assert set(SEARCHABLE) == {"lr", "optim", "batch_size", "dropout", "weight_decay", "momentum", "use_scheduler",
                               "brightness", "saturation", "crop_ratio", "kl_temp", "kl_interp"}
