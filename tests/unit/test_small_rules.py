"""Small rules that a one-line slip could break while every end-to-end number still looks plausible: each is
checked here in well under a second against a hand-worked value or an independent computation (the
helpers of the tables, the floors, the sanity checks, the released data rules, progress and the report)."""
import json
import math
import os
import re

import numpy as np
import pytest
import torch

from brnpa.analysis import comparisons
from brnpa.analysis.comparisons import PairedComparison


def pair(first, second, better="", p=0.01, p_holm=0.03):
    return PairedComparison(first, second, 10, 0, 0, 0.0, 0.0, 0.0, 0.5, p, 0.5, p_holm, better)


# ---- analysis: which image a value belongs to, floors, marks, Holm matrices

def test_indexed_values_keep_each_value_with_its_own_image():
    """A nan (a score not defined on an image) is dropped with its image: the values after it keep their own
    test indices."""
    from brnpa.analysis.experiment import Experiment, indexed_values
    rows = {"cnn": {"DAUC": np.array([0.1, np.nan, 0.3, 0.4])}}
    sets = {"Del": {"cnn": {"img_inds": np.array([7, 8, 9, 12])}}}
    experiment = Experiment(rows, {}, None, {}, [], [], sets, {}, {})
    assert indexed_values(experiment) == {"DAUC": {"cnn": {7: 0.1, 9: 0.3, 12: 0.4}}}


def test_a_source_the_floor_beats_is_not_better_than_it():
    pairs = [pair("cnn", "cnn-random", better="cnn-random"), pair("b_cnn", "cnn-random", better="b_cnn"),
             pair("cnn-edges", "cnn-random", better="")]
    assert comparisons.not_better_than(pairs, "cnn-random") == {"cnn", "cnn-edges"}


def test_the_floor_mark_goes_to_the_sources_at_chance_only():
    from brnpa.analysis.summary import NOT_ABOVE_FLOOR, below_floor, marks
    pairs = {"DAUC": [pair("cnn", "cnn-random", better="cnn"), pair("cnn-edges", "cnn-random", better="")]}
    floor = below_floor(pairs)
    assert floor == {"DAUC": {"cnn-edges"}}
    assert marks("cnn-edges", "DAUC", {}, floor) == NOT_ABOVE_FLOOR and marks("cnn", "DAUC", {}, floor) == ""


def test_the_best_mark_over_seeds_needs_the_same_winner_in_every_seed():
    from brnpa.analysis.summary import seed_marks
    a_wins = {"DAUC": [pair("a", "b", better="a")]}
    b_wins = {"DAUC": [pair("a", "b", better="b")]}
    assert seed_marks({"s1": (a_wins, None, None), "s2": (b_wins, None, None)})[0] == {}
    assert seed_marks({"s1": (a_wins, None, None), "s2": (a_wins, None, None)})[0] == {"DAUC": "a"}


def test_the_pair_matrix_holds_the_holm_adjusted_p():
    sources, matrix = comparisons.holm_matrix([pair("a", "b", p=0.01, p_holm=0.03),
                                               pair("a", "c", p=0.02, p_holm=0.04)])
    assert sources == ["a", "b", "c"]
    assert matrix.tolist() == [[1, 0.03, 0.04], [0.03, 1, 1], [0.04, 1, 1]]


def test_a_constant_score_says_why_alpha_is_not_computable():
    tied = comparisons.reliability({"a": {1: 0.5, 2: 0.5, 3: 0.5}, "b": {1: 0.5, 2: 0.5, 3: 0.5}}, True, 50)
    assert math.isnan(tied.alpha)
    words = comparisons.reliability_words(tied.alpha, tied.images, len(tied.sources))
    assert "tied on every image" in words and "fewer than 2" not in words
    assert "fewer than 2" in comparisons.reliability_words(math.nan, 1, 3)


def test_pearson_rows_say_nan_for_a_row_with_a_nan():
    from brnpa.metrics.faithfulness import pearson_rows
    rows = pearson_rows([[1., 2., 3.], [1., np.nan, 3.], [2., 2., 2.]], [[1., 2., 4.], [1., 2., 3.], [1., 2., 3.]])
    assert rows[0] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1])
    assert np.isnan(rows[1]) and rows[2] == 0.0  # a constant row: 0, as documented


def test_non_finite_images_are_named_by_test_index():
    from brnpa.analysis.sets import non_finite_images
    from brnpa.metrics.tasks import TASKS
    arrays = {"img_inds": np.array([4, 9, 11]), "curves": np.zeros((3, 2, 2)), "preds": np.array([0, 1, 2])}
    arrays["curves"][2, 1, 1] = np.inf
    arrays["curves"][0, 0, 1] = np.nan
    assert non_finite_images(arrays, TASKS["Del"]).tolist() == [4, 11]


def sanity_arrays(image_nb, side):
    """A sanity set of image_nb images (test indices 3, 4...) with maps side x side and 2 stages, every value 0."""
    return {"img_inds": np.arange(3, 3 + image_nb), "mprt_rho": np.zeros((image_nb, 2)),
            "mprt_ssim": np.zeros((image_nb, 2)), "class_rho": np.zeros(image_nb),
            "randomised_maps": np.zeros((image_nb, 2, side, side), dtype=np.uint8), "noise_rho": np.zeros(image_nb),
            "noise_ssim": np.zeros(image_nb), "input_rho": np.zeros(image_nb)}


@pytest.mark.parametrize("name,image_nb,side,left_out", [
    ("mprt_ssim", 3, 2, False), ("mprt_ssim", 3, 4, True), ("noise_ssim", 1, 2, False), ("noise_ssim", 2, 3, True),
    ("input_rho", 1, 4, False), ("input_rho", 3, 4, True), ("input_rho", 3, 2, True), ("mprt_rho", 3, 2, True),
    ("class_rho", 1, 2, True), ("noise_rho", 2, 2, True)])
def test_a_nan_is_allowed_only_where_its_value_is_undefined(name, image_nb, side, left_out):
    """SSIM is undefined on maps under 3 x 3, input rho for an image alone in its set; by hand, a nan anywhere else
    (input rho of a set of 3, SSIM of 4 x 4 maps, any correlation) leaves the image out, as the task's sets are
    read (load_task_sets passes the task)."""
    from brnpa.analysis.sets import non_finite_images
    from brnpa.metrics.tasks import TASKS
    arrays = sanity_arrays(image_nb, side)
    arrays[name][0] = np.nan
    assert non_finite_images(arrays, TASKS["Sanity"]).tolist() == ([3] if left_out else [])
    arrays[name][0] = np.inf  # an inf is never an undefined value
    assert non_finite_images(arrays, TASKS["Sanity"]).tolist() == [3]


# ---- floors and seeds

def test_image_seeds_are_distinct_for_every_seed_and_test_index():
    from brnpa.metrics.saliency import image_seed
    seeds = [image_seed(seed, index) for seed in range(40) for index in range(3000)]
    assert len(set(seeds)) == len(seeds)


def build(name, **values):
    from brnpa.metrics.saliency import SOURCES, SourceInputs
    return SOURCES[name].build(SourceInputs({"seed": 3, "center_sigma": 0.5, **values}))


class MapSizeModel(torch.nn.Module):
    """What a floor asks of a model: its map size (2 x 3 unless told)."""

    def __init__(self, height=2, width=3):
        super().__init__()
        self.size = (height, width)

    def forward(self, images):
        return {"output": torch.zeros(len(images), 2), "att_maps": torch.zeros(len(images), 1, *self.size)}


def test_the_random_floor_draws_a_map_per_image_whatever_the_batch():
    random_floor = build("random")
    images = torch.zeros(3, 3, 8, 8)
    together = random_floor(MapSizeModel(), images, [0, 0, 0], [5, 6, 7])
    alone = random_floor(MapSizeModel(), images[:1], [0], [6])
    assert not torch.equal(together[0], together[1]) and torch.equal(together[1], alone[0])


def test_the_centre_floor_is_the_gaussian_worked_by_hand():
    """A 2 x 3 map: rows at -1 and 1, columns at -1, 0, 1 (linspace); sigma 0.5: exp(-(r^2 + c^2) / 0.5)."""
    maps = build("center", center_sigma=0.5)(MapSizeModel(), torch.zeros(1, 3, 8, 8), [0], [0])
    expected = torch.tensor([[math.exp(-4), math.exp(-2), math.exp(-4)]] * 2)
    assert maps.shape == (1, 2, 3) and torch.allclose(maps[0], expected, rtol=1e-6)


def test_a_centre_floor_width_that_flattens_the_map_is_refused():
    """1e308: sigma squared is inf in float64 and every cell gets exp(-0) = 1 (not an OverflowError); a 2 x 2
    map is constant whatever the width (its four cells are as far from the centre), and is left as it is."""
    from brnpa.core.errors import UserError
    with pytest.raises(UserError, match="same value on every cell of the 2 x 3 map"):
        build("center", center_sigma=1e308)(MapSizeModel(), torch.zeros(1, 3, 8, 8), [0], [0])
    square = build("center")(MapSizeModel(2, 2), torch.zeros(1, 3, 8, 8), [0], [0])
    assert torch.equal(square, torch.full((1, 2, 2), math.exp(-4)))


def test_the_centre_floor_default_width_is_the_documented_one():
    from brnpa.runs.args import OPTIONS
    method = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "METHOD.md")).read()
    assert OPTIONS["center_sigma"].default == 0.5 and re.search(r"`--center_sigma`[^.]*0\.5", method)


def test_the_edge_floor_sees_horizontal_and_vertical_edges():
    """Sobel magnitude by hand: a step of 1 between two columns (or rows) gives 4 on the two columns (rows)
    beside it (1 + 2 + 1), 0 elsewhere, at pixel resolution; as the curves see it, pooled to 2 x 2 cells, each
    holding one of those columns (rows) out of three: 4 / 3 everywhere, for the vertical edge and for the same
    edge turned horizontal."""
    from brnpa.metrics.saliency import pooled_to
    vertical = torch.zeros(1, 3, 8, 6)
    vertical[..., 3:] = 1  # a step between columns 2 and 3
    horizontal = vertical.transpose(2, 3).contiguous()  # 6 x 8: a step between rows 2 and 3
    edges = build("edges")
    across = edges(MapSizeModel(2, 2), vertical, [0], [0])[0]
    by_hand = torch.zeros(8, 6)
    by_hand[:, 2:4] = 4
    assert torch.allclose(across, by_hand)
    assert torch.allclose(edges(MapSizeModel(2, 2), horizontal, [0], [0])[0], by_hand.T)
    for image in (vertical, horizontal):
        pooled = pooled_to(edges, (2, 2))(MapSizeModel(2, 2), image, [0], [0])[0]
        assert torch.allclose(pooled, torch.full((2, 2), 4 / 3))


# ---- sanity checks

def test_each_stage_of_the_cascade_is_drawn_from_its_own_seed():
    """Stage k is drawn from seed + k: layer4, second in a cascade seeded 10, is re-initialised as layer4 alone
    in a cascade seeded 11, and not as in one seeded 10."""
    from helpers import tiny_model
    from brnpa.metrics.sanity import cascading_randomisation
    torch.manual_seed(0)
    model = tiny_model(head="cnn")
    second = list(cascading_randomisation(model, ["classifier", "layer4"], seed=10))[-1][1]
    alone = list(cascading_randomisation(model, ["layer4"], seed=11))[-1][1]
    same_seed = list(cascading_randomisation(model, ["layer4"], seed=10))[-1][1]
    weight = "layer4.0.conv1.weight"
    weights = [dict(m.backbone.named_parameters())[weight] for m in (second, alone, same_seed)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_ssim_of_one_window_is_the_formula_on_unit_range_maps():
    """A 7 x 7 map has one 7 x 7 window: SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2
    + s_b^2 + C2)), sample (co)variances, C1 = 0.01^2, C2 = 0.03^2 for maps min-max scaled to [0, 1]."""
    from brnpa.metrics.sanity import ssim
    rng = np.random.default_rng(0)
    a, b = rng.random((7, 7)), rng.random((7, 7))
    a, b = [(m - m.min()) / (m.max() - m.min()) for m in (a, b)]
    mu_a, mu_b = a.mean(), b.mean()
    cov = np.cov(a.ravel(), b.ravel(), ddof=1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov[0, 1] + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (cov[0, 0] + cov[1, 1]
                                                                                               + c2))
    assert ssim(a * 5 + 2, b) == pytest.approx(expected, rel=1e-6)


def test_the_other_class_can_be_any_class_but_the_image_own():
    from brnpa.metrics.sanity import other_classes
    drawn = other_classes([1] * 300, 4, seed=0, indices=range(300))
    assert set(drawn) == {0, 2, 3}
    assert other_classes([1], 4, 0, [17]) == other_classes([1], 4, 0, [17])  # by (seed, test index)


# ---- released data rules, progress

def test_the_released_split_truncates_the_train_share():
    """10 images, train_prop 0.75: int(7.5) = 7 train images, as the released random_split lengths."""
    from brnpa.data.load_data import released_split
    samples = [(f"img{k}.jpg", k % 2) for k in range(10)]
    train, val = released_split(samples, 0.75)
    reference = torch.utils.data.random_split(range(10), [7, 3], generator=torch.Generator().manual_seed(1))
    assert [int(name[3:-4]) for name, _ in train] == sorted(reference[0].indices)
    assert [int(name[3:-4]) for name, _ in val] == sorted(reference[1].indices)


def test_the_released_batch_cut_keeps_the_first_missing_images():
    """Batch 12 from loader batches of 9: 9 + the first 3 of the next batch, whose other 6 images are not
    trained on; 36 images give 2 steps."""
    from brnpa.jobs.training import released_step_chunks
    loader = [(torch.arange(start, start + 9), torch.arange(start, start + 9)) for start in range(0, 36, 9)]
    steps = list(released_step_chunks(loader, 12))
    assert [[target.tolist() for _, target in step] for step in steps] == [
        [list(range(0, 9)), [9, 10, 11]], [list(range(18, 27)), [27, 28, 29]]]


def test_progress_of_a_resumed_task_counts_from_where_it_stopped():
    from brnpa.runs.runtime import progress
    bar = progress(range(6), "Del", total=10, initial=4)
    for _ in bar:
        pass
    assert bar.done == 10


# ---- the perturbation task passes the source's cell order

def test_the_task_gets_the_order_the_source_imposes(tmp_path):
    """A source with its own order of the cells (the released saliency's tie order): the task's compute gets
    that order, not the default one."""
    from argparse import Namespace
    from brnpa.metrics.tasks import TASKS, PerturbationTask, TaskContext
    from brnpa.jobs.attention_metrics import resumable_records, source_order
    seen = []

    def compute(forward, images, saliencies, classes, cells_per_step, batch_size, order, context):
        seen.append(order)
        return {"curves": [torch.zeros(1, 2) for _ in images]}

    def saliency(model, images, classes, indices):
        return torch.zeros(len(images), 2, 2)
    saliency.order = "the source's order"
    task = PerturbationTask("Del", "get_dauc_scores.sh", "deletion curves", ("curves",), compute, lambda n: n + 1)
    config = Namespace(resume=False, att_metrics_batch_size=2, seed=1)
    context = TaskContext(None, saliency, [0, 1], 1, {})
    resumable_records(task, None, lambda samples: torch.zeros(len(samples), 3, 4, 4), ["a", "b"],
                      [torch.zeros(2, 2)] * 2, [0, 0], (1, 4), source_order(saliency), str(tmp_path / "partial.pth"),
                      {}, "cnn", config, context)
    assert seen and all(order == "the source's order" for order in seen)
    from brnpa.metrics.perturbation import step_masks
    assert source_order(lambda *args: None) is step_masks and "Del" in TASKS


# ---- the report

def report_gallery(image_nb):
    from brnpa.analysis.report.build import Gallery, GalleryImage
    images = [GalleryImage(index * 2, 0, np.zeros((4, 4, 3), np.uint8), {"a": np.full((2, 2), 0.5)}, {"a": 0},
                           {"Del": {"a": np.array([0.5, 0.1])}}, {"DAUC": {"a": 0.25}}) for index in range(image_nb)]
    return Gallery(["a"], {"a": "a"}, ["x"], [("DAUC", "↓", "Del")], [("Del", "DAUC", "deleted",
                                                                       {"a": np.array([0.5, 1.0])})], images)


def test_each_image_is_in_the_chunk_its_index_entry_names(tmp_path):
    from brnpa.analysis.report.build import IMAGES_PER_CHUNK, Table, write_report
    write_report(str(tmp_path), "t", Table([("model_id", "")], [], []), [], report_gallery(IMAGES_PER_CHUNK + 2))
    assets = tmp_path / "report_assets"
    index = json.loads(re.fullmatch(r"reportIndex\((.*)\);\n", (assets / "index.js").read_text(), re.S).group(1))
    for entry in index["images"]:
        text = (assets / f"chunk_{entry['chunk']}.js").read_text()
        chunk = json.loads(re.fullmatch(r"reportChunk\(\d+,(.*)\);\n", text, re.S).group(1))
        assert str(entry["i"]) in chunk


def test_the_gallery_draws_the_scores_of_the_curves(tiny_synth, tmp_path):
    """The curve of an image in the gallery is the score column of its curve array (column 1), not the
    cells-left column."""
    from argparse import Namespace
    from brnpa.analysis.report.gallery import experiment_gallery
    from helpers import tiny_options
    options = tiny_options(data_dir=tiny_synth, dataset_test="tiny_test", class_nb=3)
    curves = np.stack([np.stack([[3., 2., 1.], [0.9, 0.5, 0.2]], axis=1), np.stack([[3., 2., 1.], [0.8, 0.4, 0.1]],
                                                                                   axis=1)])
    from brnpa.metrics.tasks import TASKS
    sets = {key: {} for key in TASKS}  # as processResults reads them: every task, most without sets here
    sets["Del"] = {"cnn": {"img_inds": np.array([0, 4]), "preds": np.array([0, 1]), "curves": curves}}
    (tmp_path / "attMetrDel_cnn.json").write_text("{}")
    gallery = experiment_gallery(str(tmp_path), sets, {"cnn": Namespace(args=options)},
                                 {"cnn": {0: np.zeros((2, 2)), 4: np.zeros((2, 2))}})
    assert [image.test_index for image in gallery.images] == [0, 4]
    assert gallery.images[1].curves["Del"]["cnn"].tolist() == [0.8, 0.4, 0.1]


def test_the_report_draws_a_pixel_map_averaged_down_to_its_largest_side():
    """A 128 x 96 map becomes 64 x 48, each value the mean of a 2 x 2 block (numpy's reshape here); a 4 x 4 map
    is left as it is."""
    from brnpa.analysis.report.gallery import at_most
    maps = np.random.default_rng(0).random((2, 128, 96))
    by_hand = maps.reshape(2, 64, 2, 48, 2).mean(axis=(2, 4))
    assert np.allclose(at_most(maps, 64), by_hand, atol=1e-6)
    assert np.array_equal(at_most(maps[:, :4, :4], 64), maps[:, :4, :4])


# ---- seeds

def test_a_seeds_column_averages_the_defined_values_and_counts_its_experiments():
    """By hand: DAUC of the first experiment is the mean of its defined images (0.2 and 0.4: 0.3, the nan image
    left out); input rho is nan for every image of the second (a set of one image), so that experiment adds
    nothing to the column and its count is 1; a model missing from an experiment counts it nowhere."""
    from brnpa.analysis.experiment import seed_values
    rows = [{"cnn": {"DAUC": np.array([0.2, np.nan, 0.4]), "input ρ": np.array([0.5, 0.7])}},
            {"cnn": {"DAUC": np.array([0.5]), "input ρ": np.array([np.nan])}, "b_cnn": {"DAUC": np.array([0.1])}}]
    values = seed_values(rows)
    assert values["cnn"]["DAUC"] == pytest.approx([0.3, 0.5]) and values["cnn"]["input ρ"] == pytest.approx([0.6])
    assert values["b_cnn"]["DAUC"] == pytest.approx([0.1]) and values["b_cnn"]["input ρ"] == []


def test_the_noise_ceiling_note_leaves_out_the_images_the_table_leaves_out():
    """Two passes agree at rho 0.5 on the kept image; the image left out (non-finite elsewhere in its set) has
    rho 0, which would make the note say 0.25."""
    from brnpa.analysis.tables import noise_ceiling_notes
    arrays = sanity_arrays(2, 4)
    arrays["noise_rho"][:] = [0.5, 0.0]
    arrays["non_finite"] = np.array([4])
    notes = noise_ceiling_notes({"cnn": arrays})
    assert len(notes) == 1 and "agree at ρ 0.500" in notes[0]


def seed_runs(**changes):
    """{model_id: (run signature, test images)} of a cnn run on dataset u at 48 px, with changes."""
    signature = {"exp_id": "e1", "seed": 1, "dataset_test": "u_test", "img_size": 48, "lr": 0.01, **changes}
    return {"cnn": (signature, ("a/1.png", "b/2.png"))}


@pytest.mark.parametrize("second,refused", [
    (seed_runs(exp_id="e2", seed=2), None),
    (seed_runs(exp_id="e2", seed=2, lr=0.02), None),  # a search may pick other values in each seed
    (seed_runs(exp_id="e2"), "identical options, seed 1 included"),
    (seed_runs(exp_id="e2", seed=2, img_size=32), "--img_size 48 / 32"),
    (seed_runs(exp_id="e2", seed=2, dataset_test="t_test"), "--dataset_test u_test / t_test"),
    ({"cnn": (seed_runs(exp_id="e2", seed=2)["cnn"][0], ("a/1.png",))}, "test images (2 / 1 files")])
def test_seeds_must_be_other_runs_of_one_configuration(second, refused):
    from brnpa.analysis.summary import seed_refusal
    message = seed_refusal({"e1": seed_runs(), "e2": second})
    assert message is None if refused is None else (refused in message and "e1 and e2" in message)


# ---- guards of runs and sets, each on a hand-worked case

def test_a_copied_run_is_found_by_its_run_id_not_by_its_model_id():
    from brnpa.analysis.summary import same_run_refusal
    assert same_run_refusal({"s1": {"cnn": "r1", "b_cnn": "r2"}, "s2": {"cnn": "r3", "b_cnn": "r4"}}) is None
    message = same_run_refusal({"s1": {"cnn": "r1"}, "s2": {"cnn": "r1"}})
    assert "s1 and s2 hold the same run of 'cnn' (run r1)" in message


def test_only_the_options_written_on_the_command_line_are_given(tmp_path):
    from brnpa.runs.args import given_options
    config = tmp_path / "c.config"
    config.write_text("lr = 0.5\nepochs = 3\n")
    assert given_options(["-c", str(config), "--seed", "2", "--attention_metrics", "Del"]) == {"seed",
                                                                                               "attention_metrics"}
    assert given_options([]) == frozenset()


def fake_landed(**trained):
    """What check_fixed_options reads of a landed run: its options, model id and .ini path."""
    from types import SimpleNamespace
    from helpers import tiny_options
    return SimpleNamespace(args=tiny_options(**trained), model_id="cnn", config_file="cnn.ini", run_id="r1")


def test_an_evaluation_refuses_a_run_defining_option_it_would_ignore_and_takes_its_own():
    from brnpa.core.errors import UserError
    from helpers import tiny_options
    from brnpa.jobs.attention_metrics import check_fixed_options
    landed = fake_landed(lr=0.01)
    check_fixed_options(tiny_options(lr=0.01, seed=7), landed, {"lr", "seed", "att_metrics_img_nb"})  # same value
    check_fixed_options(tiny_options(lr=0.5), landed, frozenset())  # not written: the run's value is used
    with pytest.raises(UserError, match=r"--lr 0.5 \(trained: 0.01\)"):
        check_fixed_options(tiny_options(lr=0.5), landed, {"lr"})


@pytest.mark.parametrize("wanted,refused", [(3, True), (4, False), (5, False)])
def test_a_landed_set_is_replaced_by_a_smaller_one_only_when_asked(wanted, refused):
    """A set of 4 images: asking for 3 would lose one (refused), 4 or 5 lose none. Another run's set is no
    loss."""
    from brnpa.jobs.attention_metrics import replacement_refusal
    from brnpa.metrics.tasks import TASKS
    saved = {"run_id": "r1", "images": [0, 2, 5, 9], "seed": 1}
    message = replacement_refusal(saved, {"run_id": "r1", "images": list(range(wanted))}, TASKS["Del"],
                                  {"curves": "attMetrDel_cnn.npy"})
    assert (message is not None) == refused
    assert replacement_refusal(saved, {"run_id": "r2", "images": [0]}, TASKS["Del"], {"curves": "x"}) is None


def test_the_seed_defines_a_set_and_the_maps_of_a_source_that_draws():
    """The set's signature holds the seed; the saved maps' key holds it only for a source that draws (the random
    floor) or a model that draws in its forward pass, and never a task's own options (the sanity stages)."""
    from types import SimpleNamespace
    from helpers import tiny_options
    from brnpa.jobs.attention_metrics import post_hoc_maps_key, set_signature
    from brnpa.metrics.saliency import SOURCES, SourceInputs
    signatures = {}
    for name in ("random", "gradient"):
        for seed in (1, 2):
            config = tiny_options(seed=seed, attention_metrics="Sanity", sanity_stages="classifier")
            inputs = SourceInputs({"seed": seed, "batch_size": 6, "val_batch_size": 16})
            signature = set_signature(SimpleNamespace(run_id="r1"), SOURCES[name], inputs, np.array([3, 4]), 1,
                                      config)[1]
            assert signature["seed"] == seed and signature["sanity_stages"] == "classifier"
            signatures[name, seed] = signature
    for name, draws in (("random", True), ("gradient", False)):
        keys = [post_hoc_maps_key(signatures[name, seed], SOURCES[name], False) for seed in (1, 2)]
        assert (keys[0] != keys[1]) == draws and "sanity_stages" not in keys[0] and keys[0]["images"] == [3, 4]
    drawing_model = [post_hoc_maps_key(signatures["gradient", seed], SOURCES["gradient"], True) for seed in (1, 2)]
    assert drawing_model[0] != drawing_model[1]


def test_the_sanity_checks_see_a_pixel_source_at_its_own_resolution_and_the_curves_pooled():
    """A 2 x 4 pixel map of a 1 x 2 cell model: the curves see each cell's mean (by hand), the sanity task the
    pixels themselves."""
    from brnpa.jobs.attention_metrics import task_saliencies
    from brnpa.metrics.saliency import SOURCES
    pixels = torch.tensor([[[1., 3., 0., 0.], [5., 7., 0., 8.]]])
    source = SOURCES["gradient"]
    at_map_size, live = task_saliencies(source, lambda *args: pixels, (1, 2), None)
    assert torch.equal(at_map_size(None, None, [0], [0]), torch.tensor([[[4., 2.]]]))
    assert torch.equal(live(None, None, [0], [0]), pixels)
