"""The sanity task (brnpa/metrics/sanity.py) and the floor sources (brnpa/metrics/saliency.py): which stages
each step of the cascading randomisation re-initialises, sources that ignore the model or the class, a gradient that
depends on both, and the seeded random floor."""
import numpy as np
import pytest
import torch
from scipy import stats

from helpers import import_or_skip_unless_ci, logits_module, tiny_model
from brnpa.metrics import sanity
from brnpa.metrics.saliency import SOURCES, SourceInputs, live_own_maps
from brnpa.models.heads import HEADS


def model_and_images(head="br_npa"):
    torch.manual_seed(0)
    model = tiny_model(head=head, resnet_stride=1).eval()
    images = torch.randn(6, 3, 64, 64)
    assert model(images[:1])["att_maps"].shape[-2:] == (4, 4)
    return model, images


def cam_saliency(model, images, classes, indices):
    """The class-activation map of the class: the classifier's weights of the class times the features (the
    CNN head pools them by their mean), a map that depends on the classifier and the backbone."""
    with torch.no_grad():
        features = model.backbone(images)
        weights = model.classifier.weight[torch.as_tensor(classes)]  # (B, C)
        return torch.einsum("bc,bchw->bhw", weights, features)


def changed_parts(model, randomised):
    """The top-level parts whose parameters differ between the two models."""
    parts = {"classifier": ["classifier.", "head."], "stem": ["backbone.conv1.", "backbone.bn1."],
             **{f"layer{k}": [f"backbone.layer{k}."] for k in range(1, 5)}}
    original, new = dict(model.named_parameters()), dict(randomised.named_parameters())
    return {part for part, prefixes in parts.items() for name in original
            if any(name.startswith(prefix) for prefix in prefixes) and not torch.equal(original[name], new[name])}


def test_the_stages_are_reinitialised_from_the_top_cumulatively():
    model, _ = model_and_images("b_cnn")  # a head with parameters: it goes with the classifier
    seen = []
    for stage, randomised in sanity.cascading_randomisation(model, sanity.STAGES, seed=0):
        seen.append(stage)
        assert changed_parts(model, randomised) == set(seen), stage
    assert seen == ["classifier", "layer4", "layer3", "layer2", "layer1", "stem"]


def test_batchnorm_statistics_stay_as_trained_and_the_model_is_untouched():
    model, images = model_and_images()
    model.train()
    model(images)  # running statistics away from their initial values
    model.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    randomised = list(sanity.cascading_randomisation(model, sanity.STAGES, seed=0))[-1][1]
    for name, value in randomised.state_dict().items():
        if "running" in name:
            assert torch.equal(value, before[name]), name
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


@pytest.mark.parametrize("name", ["center", "edges", "random"])
def test_a_source_that_ignores_the_model_keeps_rho_one(name):
    model, images = model_and_images()
    source = SOURCES[name].build(SourceInputs({"seed": 3, "center_sigma": 0.5}))
    records = sanity.sanity_records(model, source, images, [0] * 6, list(range(6)), sanity.STAGES, seed=0)
    assert torch.stack(records["mprt_rho"]).tolist() == [[1.0] * 6] * 6
    assert torch.stack(records["mprt_ssim"]).numpy() == pytest.approx(np.ones((6, 6)))
    assert [value.item() for value in records["class_rho"]] == [1.0] * 6


def test_a_class_activation_map_loses_its_correlation_once_the_weights_are_reinitialised():
    model, images = model_and_images("cnn")
    classes = model(images)["output"].argmax(dim=1).tolist()
    records = sanity.sanity_records(model, cam_saliency, images, classes, list(range(6)), sanity.STAGES, 0)
    rho = torch.stack(records["mprt_rho"]).numpy()  # (images, stages)
    # by hand for the first image after the last stage: the two maps, ranked
    randomised = list(sanity.cascading_randomisation(model, sanity.STAGES, seed=0))[-1][1]
    first = cam_saliency(model, images[:1], classes[:1], [0])[0].flatten()
    last = cam_saliency(randomised, images[:1], classes[:1], [0])[0].flatten()
    assert rho[0, -1] == pytest.approx(stats.spearmanr(first, last).statistic)
    # the map after the last stage, saved for the report: min-max scaled to 0-255
    scaled = np.round((last - last.min()).numpy() / (last.max() - last.min()).item() * 255)
    assert records["randomised_maps"][0].dtype == torch.uint8 and records["randomised_maps"][0].shape == (6, 4, 4)
    assert np.abs(records["randomised_maps"][0][-1].flatten().numpy().astype(int) - scaled).max() <= 1
    assert np.abs(rho[:, 0]).mean() < 0.6 and np.all(rho < 1)  # the classifier alone changes the map
    # the map of another class is another map
    assert np.mean([value.item() for value in records["class_rho"]]) < 0.9


def test_the_own_maps_do_not_depend_on_the_class():
    model, images = model_and_images()
    records = sanity.sanity_records(model, live_own_maps(HEADS["br_npa"]), images, [0] * 6, list(range(6)),
                                    ["classifier"], seed=0)
    assert [value.item() for value in records["class_rho"]] == [1.0] * 6


def test_the_random_floor_is_the_same_on_a_rerun_and_moves_with_the_seed():
    model, images = model_and_images()

    def maps(seed, indices):
        return SOURCES["random"].build(SourceInputs({"seed": seed}))(model, images[:len(indices)], [0] * len(indices),
                                                                     indices)
    assert torch.equal(maps(1, [4, 7]), maps(1, [4, 7]))
    assert torch.equal(maps(1, [4, 7])[1], maps(1, [7])[0])  # an image's map does not depend on its batch
    assert not torch.equal(maps(1, [4, 7]), maps(2, [4, 7]))


def test_an_unknown_stage_is_one_line_naming_the_stages():
    with pytest.raises(ValueError, match="the stages are classifier, layer4, layer3, layer2, layer1, stem"):
        list(sanity.cascading_randomisation(tiny_model(), ["layer9"], seed=0))


def test_spearman_and_ssim_by_hand():
    assert sanity.spearman([[1., 2.], [3., 4.]], [[10., 20.], [30., 40.]]) == 1.0
    assert sanity.spearman([[1., 2.], [3., 4.]], [[4., 3.], [2., 1.]]) == pytest.approx(-1.0)
    assert sanity.spearman(np.ones((2, 2)), [[4., 3.], [2., 1.]]) == 0.0
    first = np.arange(16.).reshape(4, 4)
    assert sanity.ssim(first, first * 3 + 1) == pytest.approx(1.0)  # min-max scaled first: the same map


def test_quantus_mprt_randomises_in_the_same_order_and_agrees_after_the_classifier():
    """Quantus's MPRT (top-down, cascading) on the same tiny CNN, images and class-activation maps. Quantus
    re-initialises one layer at a time with reset_parameters() and torch.manual_seed(its seed + 1); the sanity
    task one stage at a time, the backbone with the model's own initialisation, stage k seeded with seed + k.
    So (1) Quantus's layers, top-down, visit the stages in the task's order and are the stages' layers, and
    (2) after the classifier, where both call reset_parameters() under the same seed, the correlations agree
    image by image. Deeper stages are drawn from other initialisations: not compared."""
    quantus = import_or_skip_unless_ci("quantus")
    model, images = model_and_images("cnn")
    classes = model(images)["output"].argmax(dim=1).tolist()

    def explain(model, inputs, targets, **kwargs):  # at image size (nearest): Spearman is unchanged
        maps = cam_saliency(model.net, torch.as_tensor(inputs), list(targets), None)[:, None]
        maps = torch.nn.functional.interpolate(maps, size=inputs.shape[-2:], mode="nearest")
        return (maps - maps.amin(dim=(1, 2, 3), keepdim=True)).numpy()  # Quantus refuses all-negative maps

    metric = quantus.MPRT(layer_order="top_down", seed=42, abs=False, normalise=False, disable_warnings=True)
    scores = metric(model=logits_module(model).eval(), x_batch=images.numpy(), y_batch=np.array(classes), a_batch=None,
                    explain_func=explain, device="cpu")
    layers = [name[len("net."):] for name in scores if name != "original"]
    prefixes = {"classifier": ("classifier", "head", "aux"), "stem": ("backbone.conv1", "backbone.bn1"),
                **{f"layer{k}": (f"backbone.layer{k}",) for k in range(1, 5)}}
    stage_of = [next(stage for stage, starts in prefixes.items() if name.startswith(starts)) for name in layers]
    order = [stage for k, stage in enumerate(stage_of) if k == 0 or stage_of[k - 1] != stage]
    assert order == list(sanity.STAGES)
    assert sorted(layers) == sorted(name for name, module in model.named_modules()
                                    if hasattr(module, "reset_parameters"))  # every layer, each in a stage
    records = sanity.sanity_records(model, cam_saliency, images, classes, list(range(6)), sanity.STAGES, seed=43)
    after_classifier = torch.stack(records["mprt_rho"])[:, 0].numpy()
    assert after_classifier == pytest.approx(np.array(scores["net." + layers[0]]))


def test_the_noise_ceiling_is_one_for_a_deterministic_source_and_the_last_pass_otherwise():
    """A second pass of the unchanged model: ρ and SSIM 1 for the own maps of a model that draws nothing; for a
    source that draws at random, the Spearman ρ of its first map and of its last one (the second pass comes
    after the 6 stages and the other class, so the other statistics draw what they drew before), by hand."""
    model, images = model_and_images()
    records = sanity.sanity_records(model, live_own_maps(HEADS["br_npa"]), images, [0] * 6, list(range(6)),
                                    sanity.STAGES, seed=0)
    assert [value.item() for value in records["noise_rho"]] == [1.0] * 6
    assert [value.item() for value in records["noise_ssim"]] == pytest.approx([1.0] * 6)

    def noise(model, images, classes, indices):
        return torch.rand(len(images), 4, 4)
    torch.manual_seed(5)
    records = sanity.sanity_records(model, noise, images, [0] * 6, list(range(6)), sanity.STAGES, seed=0)
    torch.manual_seed(5)
    draws = [noise(model, images, None, None) for _ in range(len(sanity.STAGES) + 3)]
    expected = [stats.spearmanr(first.flatten(), last.flatten()).statistic for first, last in zip(draws[0], draws[-1])]
    assert [value.item() for value in records["noise_rho"]] == pytest.approx(expected)
    assert [value.item() for value in records["class_rho"]] == pytest.approx(
        [stats.spearmanr(a.flatten(), b.flatten()).statistic for a, b in zip(draws[0], draws[-2])])


def test_the_noise_ceiling_note_names_the_sources_that_draw():
    from brnpa.analysis.tables import noise_ceiling_notes
    drawing = {"noise_rho": np.array([0.5, 0.7]), "noise_ssim": np.array([0.4, np.nan]),
               "mprt_rho": np.array([[0.9, 0.55], [0.8, 0.65]]), "class_rho": np.array([0.6, 0.6])}
    steady = {**drawing, "noise_rho": np.ones(2), "noise_ssim": np.ones(2)}
    notes = noise_ceiling_notes({"a-random": drawing, "b": steady, "c": {"mprt_rho": np.ones((2, 1))}})
    assert notes == ["a-random: two passes of the unchanged model agree at ρ 0.600 and SSIM 0.400 (its forward pass "
                     "draws at random): its MPRT ρ 0.600 and class ρ 0.600 are to be read against that ceiling, "
                     "not 1"]


def test_input_rho_pairs_each_image_with_another_of_the_set_and_a_lone_image_with_none():
    """The partner of test index i is np.random.default_rng([seed, i, 1]).choice(the set's other indices), whatever
    the batch; the centre floor (one map for every image) gives input ρ 1, the random floor about 0; an image alone
    in its set gets nan (no other image to compare with), not 1."""
    from brnpa.metrics.sanity import partner_indices
    evaluated = (3, 8, 11, 20, 31)
    partners = partner_indices([8, 20], evaluated, 4)
    assert partners == [int(np.random.default_rng([4, i, 1]).choice([j for j in evaluated if j != i])) for i in (8, 20)]
    assert partner_indices([20], evaluated, 4) == partners[1:]
    torch.manual_seed(0)
    model = tiny_model(head="cnn", class_nb=3, resnet_stride=1).eval()  # 4 x 4 maps at 64 px
    images = torch.randn(5, 3, 64, 64)
    position = {index: k for k, index in enumerate(evaluated)}

    def load(indices):
        found = partner_indices(indices, evaluated, 4)
        return found, images[[position[i] for i in found]], [0] * len(found)
    for name, expected in (("center", 1.0), ("random", 0.0)):
        source = SOURCES[name].build(SourceInputs({"seed": 3, "center_sigma": 0.5}))
        with torch.no_grad():
            records = sanity.sanity_records(model, source, images, [0] * 5, list(evaluated), ["classifier"], 4, load)
        rho = np.array([float(value) for value in records["input_rho"]])
        if name == "center":
            assert np.array_equal(rho, [1.0] * 5)
        else:  # 16 cells: one ρ of independent maps has a standard deviation of about 1 / sqrt(15), their mean of
            assert abs(rho.mean()) < 0.5  # 5 about 0.12: 0.5 is 4 of those

    with torch.no_grad():
        alone = sanity.sanity_records(model, SOURCES["center"].build(SourceInputs({"center_sigma": 0.5})), images[:1],
                                      [0], [3], ["classifier"], 4,
                                      lambda indices: (partner_indices(indices, (3,), 4), images[:1], [0]))
    assert np.isnan(float(alone["input_rho"][0]))
