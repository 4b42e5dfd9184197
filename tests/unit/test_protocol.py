"""The authors' protocol: search space, schedule, heads, float32 evaluation, the released saliency arithmetic,
and the hand-worked statistics saved with the test results."""
import csv
import os
import subprocess

import numpy as np
import optuna
import pytest
import torch

from brnpa.jobs import search
from brnpa.jobs import training
from brnpa.runs.args import parse_args, with_changes
from helpers import REPO_ROOT, TINY_CONFIG, slow_curve, tiny_model, tiny_options
from brnpa.metrics.attention import scale_to_uint8, sparsity
from brnpa.metrics.perturbation import released_saliency_map, saliency_map
from brnpa.metrics.tasks import TASKS
from brnpa.core.model_ids import model_options
from brnpa.models.heads import HEADS

BR_NPA, B_CNN = HEADS["br_npa"].combine_maps, HEADS["b_cnn"].combine_maps


def test_shell_face_of_the_model_table_agrees():
    """model_ids.sh (what the scripts source) gives every id the options of brnpa/core/model_ids.py."""
    from brnpa.core.model_ids import MODEL_IDS
    for model_id in MODEL_IDS:
        completed = subprocess.run(["bash", "-c", f"ROOT='{REPO_ROOT}'; source '{REPO_ROOT}/model_ids.sh'; "
                                                  f"model_options {model_id}"], capture_output=True, text=True,
                                   check=True)
        assert completed.stdout.split() == model_options(model_id)


@pytest.mark.parametrize("model_id, max_batch_size", [("br_npa_low_res", "130"), ("b_cnn", "130"), ("cnn", "130"),
                                                      ("br_npa_high_res_distill", "60")])
def test_model_table_passes_the_authors_max_batch_size(model_id, max_batch_size):
    words = model_options(model_id)
    assert words[words.index("--max_batch_size") + 1] == max_batch_size


@pytest.mark.parametrize("max_batch_size, low", [(130, 12), (12, 4), (8, 4)])
def test_searched_batch_size_range(max_batch_size, low):
    args = parse_args(["--max_batch_size", str(max_batch_size)])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    sizes = []
    for _ in range(300):
        trial = study.ask()
        sizes.append(search.trial_config(trial, args).batch_size)
        study.tell(trial, 0.5)
    assert low <= min(sizes) and max(sizes) <= max_batch_size
    # log-uniform over the whole range: both ends are reached in 300 draws
    assert min(sizes) <= low * 1.25 and max(sizes) >= max_batch_size * 0.8
    if max_batch_size == 130:  # the median tells log from uniform: about 39 (sqrt(12 * 130)) against 71
        assert 30 <= np.median(sizes) <= 50


def test_no_pruning_by_default():
    assert parse_args([]).optuna_pruner == "none"
    assert isinstance(search.make_pruner(parse_args([]).optuna_pruner), optuna.pruners.NopPruner)
    assert isinstance(search.make_pruner("median"), optuna.pruners.MedianPruner)


def test_bcnn_attention_conv_has_no_bias():
    model = tiny_model(attention=True, br_npa=False)
    assert model.head.att_conv.bias is None


def test_aux_heads_bias_dropout_and_nll_weight():
    torch.manual_seed(0)
    model = tiny_model(aux_on_masked=True, lin_lay_bias=False, dropout=0.5).train()
    assert all(head.bias is not None for head in model.aux.values())
    model.dropout = torch.nn.Dropout(p=1.0)  # z after dropout is all zero: each aux head outputs its bias
    images, target = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    result = model(images)
    for name, logits in result["aux"].items():
        assert torch.allclose(logits, model.aux[name].bias.expand(3, -1))
    main = torch.nn.functional.cross_entropy(result["output"], target)
    aux = sum(torch.nn.functional.cross_entropy(v, target) for v in result["aux"].values())
    assert torch.allclose(training.compute_loss(result, target, 2.0), 2.0 * (main + aux))


@pytest.fixture(scope="module")
def scheduled_run(tiny_synth, tmp_path_factory):
    """A plain 4-epoch SGD run with the scheduler on, bf16 asked for training (ignored on the CPU)."""
    import trainVal
    root = tmp_path_factory.mktemp("protocol")
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG)
    argv = ["-c", str(config), "--data_dir", tiny_synth, "--results_dir", str(root / "results"),
            "--model_id", "sched", "--optim", "SGD", "--lr", "0.01", "--use_scheduler", "True",
            "--epochs", "4", "--max_worse_epoch_nb", "10", "--amp", "True"]
    trainVal.main(argv)
    return argv, root / "results" / "e2e"


def test_lr_schedule_of_the_authors(scheduled_run):
    _, folder = scheduled_run
    with open(folder / "modelsched_metrics.csv") as file:
        lrs = [float(row["lr"]) for row in csv.DictReader(file)]
    assert np.allclose(lrs, [0.01, 0.009, 0.009, 0.0081])


def test_validation_uses_the_trials_crop_ratio(tiny_synth, monkeypatch):
    args = parse_args(["--data_dir", tiny_synth, "--dataset_train", "tiny_train", "--dataset_val", "tiny_train",
                       "--dataset_test", "tiny_test", "--class_nb", "3", "--img_size", "32", "--crop_ratio", "0.875",
                       "--num_workers", "0"])
    seen = []
    real_build = training.build_transform

    def spy(geometry, augmentation=None):
        seen.append((augmentation is not None, geometry.crop_ratio))
        return real_build(geometry, augmentation)

    monkeypatch.setattr(training, "build_transform", spy)
    trial = with_changes(args, crop_ratio=0.5)  # a trial is the configuration with its sampled values
    one_image = [("unused.png", 0)]  # the loaders are built, never iterated
    training.build_train_loaders(trial, {"train": one_image, "val": one_image})
    assert sorted(seen) == [(False, 0.5), (True, 0.5)]


def test_evaluation_runs_in_float32_by_default(scheduled_run, monkeypatch):
    """--amp True asks for bf16 training only: the test pass and the curves use --amp_eval (False)."""
    import trainVal
    argv, _ = scheduled_run
    asked = []
    real_autocast = training.autocast

    def spy(device, enabled):
        asked.append(enabled)
        return real_autocast(device, enabled)

    monkeypatch.setattr(training, "autocast", spy)
    model = tiny_model()
    args = tiny_options(amp=True, amp_eval=False)
    loader = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    training.evaluate(model, loader, torch.device("cpu"), args.nll_weight, args.amp_eval, collect_maps=True)
    assert asked == [False]
    from brnpa.jobs import attention_metrics
    monkeypatch.setattr(attention_metrics, "autocast", spy)
    asked.clear()
    trainVal.main(argv + ["--attention_metrics", "Del", "--att_metrics_img_nb", "2"])
    assert asked and not any(asked)
    asked.clear()
    trainVal.main(argv + ["--attention_metrics", "Del", "--att_metrics_img_nb", "2", "--amp_eval", "True"])
    assert asked and all(asked)


def test_released_saliency_wraps_like_the_released_code():
    # map 0 and norm as saved (uint8); 200 * 200 = 40000 = 64 (mod 256), 16 * 16 = 256 = 0 (mod 256)
    maps = torch.tensor([[[200, 100], [16, 1]]], dtype=torch.uint8)
    norm = torch.tensor([[[200, 2], [16, 255]]], dtype=torch.uint8)
    released = released_saliency_map(maps, norm, BR_NPA)
    assert torch.allclose(released, torch.tensor([[64., 200.], [0., 255.]]) / 255)
    floating = saliency_map(maps, norm, HEADS["br_npa"])
    assert torch.allclose(floating, (torch.tensor([[40000., 200.], [256., 255.]]) - 200) / (40000 - 200))
    # the most salient cell differs: the wrap changes the order
    assert released.flatten().argmax() == 3 and floating.flatten().argmax() == 0
    # B-CNN: the mean of the maps is truncated to uint8 first (3.5 -> 3, 0.5 -> 0), then the wrapping product
    bcnn_maps = torch.tensor([[[7, 1], [200, 90]], [[0, 0], [201, 90]]], dtype=torch.uint8)
    bcnn_norm = torch.tensor([[[100, 255], [2, 3]]], dtype=torch.uint8)
    # means 3.5, 0.5, 200.5, 90 -> 3, 0, 200, 90; products 300, 0, 400, 270 -> 44, 0, 144, 14
    expected = torch.tensor([[44., 0.], [144., 14.]]) / 144
    assert torch.allclose(released_saliency_map(bcnn_maps, bcnn_norm, B_CNN), expected)
    with pytest.raises(ValueError, match="uint8"):
        released_saliency_map(maps.float(), norm, BR_NPA)


def test_sparsity_hand_worked():
    # two 1x2 maps and a norm; weighted by norm / max(norm) = (0.5, 1)
    maps = torch.tensor([[[[2., 1.]], [[1., 3.]]]])
    norm = torch.tensor([[[[1., 2.]]]])
    # map 1: (2*.5, 1*1) = (1, 1) -> / (1 + 1e-5); map 2: (1*.5, 3*1) = (.5, 3) -> / (3 + 1e-5)
    first = np.array([1, 1]) / (1 + 1e-5)
    second = np.array([.5, 3]) / (3 + 1e-5)
    expected = ((first + second) / 2).mean()
    assert sparsity(maps, norm).item() == pytest.approx(expected, abs=1e-7)


def test_uint8_scaling_rounds():
    # one image already spanning 0..255: 42.8 -> 43 and 161.6 -> 162 when rounded (truncation: 42, 161)
    maps = torch.tensor([[[[0., 42.8], [161.6, 255.]]]])
    assert scale_to_uint8(maps).flatten().tolist() == [0, 43, 162, 255]


def test_repository_points_to_no_missing_document():
    """Nothing in the repository refers to a document that is not in it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    for name in tracked:
        if name.endswith((".py", ".md", ".sh", ".config")) and os.path.isfile(os.path.join(REPO_ROOT, name)):
            with open(os.path.join(REPO_ROOT, name)) as file:
                text = file.read()
            assert "SP" + "EC" not in text, name
    with open(os.path.join(REPO_ROOT, "README.md")) as file:
        readme = file.read()
    assert "docs/METHOD.md" in readme and os.path.isfile(os.path.join(REPO_ROOT, "docs", "METHOD.md"))


def test_grouping_runs_in_float32_under_autocast():
    """BR-NPA's grouping under bf16 autocast (as training on CUDA runs it) equals the float32 one."""
    from brnpa.models.br_npa import representative_vectors
    torch.manual_seed(0)
    features = torch.relu(torch.randn(2, 64, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vectors_amp, maps_amp = representative_vectors(features.bfloat16(), 3)
    bf16_input = features.bfloat16().float()  # the same input, rounded as autocast hands it over
    vectors, maps = representative_vectors(bf16_input, 3)
    assert vectors_amp.dtype == maps_amp.dtype == torch.float32
    assert torch.allclose(maps_amp, maps, rtol=1e-6, atol=1e-7)
    assert torch.allclose(vectors_amp, vectors, rtol=1e-6, atol=1e-6)


def test_search_distributions_are_the_released_kinds():
    """Dropout and the distillation temperature are stepped floats (TPE models them as numbers)."""
    args = parse_args(["--max_batch_size", "32", "--master_net", "True", "--m_model_id", "teacher"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    trial = study.ask()
    search.trial_config(trial, args)
    study.tell(trial, 0.5)
    distributions = study.trials[0].distributions
    assert distributions["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.6, step=0.2)
    assert distributions["kl_temp"] == optuna.distributions.FloatDistribution(1.0, 21.0, step=5.0)


def test_resize_side_is_truncated():
    from brnpa.data.load_data import Geometry, resize_to_crop
    assert resize_to_crop(Geometry(448, 0.9)).size == (497, 497)  # 497.78
    assert resize_to_crop(Geometry(448, 0.95)).size == (471, 471)  # 471.58
    assert resize_to_crop(Geometry(448, 0.9, sq_resizing=False)).size == 497


@pytest.mark.parametrize("model_id, chunk", [("br_npa_high_res_random_vectors_no_refining", "9"),
                                             ("br_npa_high_res_random_vectors", "9"),
                                             ("br_npa_high_res_no_refining", "9"),
                                             ("br_npa_high_res_auxiliary_heads", "12")])
def test_ablation_ids_pass_the_released_forward_chunk(model_id, chunk):
    assert parse_args(model_options(model_id)).max_batch_size_single_pass == int(chunk)


def test_rise_upsampling_mirrors_the_border():
    """Each RISE grid is upsampled as the reference's bilinear resize with 'reflect' borders does, i.e. scipy's
    map_coordinates with mode 'mirror' at the pixel-centre positions; then cropped at its shift."""
    from scipy import ndimage
    from brnpa.metrics.saliency_methods import upsample_masks
    generator = torch.Generator().manual_seed(0)
    grids = (torch.rand(3, 1, 4, 4, generator=generator) < 0.5).float()
    shift_y, shift_x = torch.tensor([0, 2, 4]), torch.tensor([4, 1, 0])
    masks = upsample_masks(grids, shift_y, shift_x, 18, 18)  # cells of 5 pixels, 25 x 25 before the crop
    positions = (np.arange(25) + 0.5) * 4 / 25 - 0.5
    rows, cols = np.meshgrid(positions, positions, indexing="ij")
    for grid, dy, dx, mask in zip(grids, shift_y, shift_x, masks):
        large = ndimage.map_coordinates(grid[0].double().numpy(), [rows, cols], order=1, mode="mirror")
        assert np.allclose(mask.numpy(), large[dy:dy + 18, dx:dx + 18], atol=1e-6)


def released_transcription(model, batches, head, index, cells_per_step):
    """The released code's expressions, written out literally on a model of ours: how its test pass saved the
    maps and norms (its catMap), its attrFunc and min-max, and its topk loop. Returns (saliency (h, w), the
    cells picked at each step)."""
    full = {"att": None, "norm": None}
    with torch.no_grad():
        for data in batches:
            result = model(data)
            # the released CNN's attMaps is sqrt(sum of squared features) over channels, without keepdim
            tensors = {"att": result["norm"][:, 0] if head == "cnn" else result["att_maps"], "norm": result["norm"]}
            for key, tensor in tensors.items():
                tens_min = tensor.min(dim=-1, keepdim=True)[0].min(dim=-2, keepdim=True)[0].min(dim=-3,
                                                                                                   keepdim=True)[0]
                tens_max = tensor.max(dim=-1, keepdim=True)[0].max(dim=-2, keepdim=True)[0].max(dim=-3,
                                                                                                   keepdim=True)[0]
                scaled = (tensor - tens_min) / (tens_max - tens_min)
                saved = (scaled.cpu() * 255).byte()
                full[key] = saved if full[key] is None else torch.cat((full[key], saved), dim=0)
    att_maps, norm = full["att"], full["norm"]
    if head in ("cnn", "br_npa"):
        maps = (att_maps[index, 0:1] * norm[index]).unsqueeze(0)
    else:
        maps = (att_maps[index].float().mean(dim=0, keepdim=True).byte() * norm[index]).unsqueeze(0)
    maps = (maps - maps.min()) / (maps.max() - maps.min())
    saliency = maps[0, 0].clone()
    total = maps.size(2) * maps.size(3)
    left, steps = total, []
    while left > 0:
        _, ind_max = maps[0, 0].view(-1).topk(k=cells_per_step)
        ind_max = ind_max[:left]
        x_max, y_max = ind_max % maps.shape[3], ind_max // maps.shape[3]
        for i in range(len(x_max)):
            maps[0, :, y_max[i], x_max[i]] = -1
        steps.append(sorted(ind_max.tolist()))
        left -= cells_per_step
    return saliency, steps


@pytest.mark.parametrize("head", ["cnn", "b_cnn", "br_npa"])
def test_released_mode_equals_a_transcription_of_the_released_code(head):
    """--att_metrics_saliency released: the maps as the released test pass saved them (in its batches), its
    arithmetic and its topk order, against the literal expressions, on a tiny model of each head."""
    from brnpa.metrics.perturbation import topk_step_masks
    from brnpa.metrics.saliency import SOURCES, SourceInputs
    torch.manual_seed(0)
    model = tiny_model(head=head, resnet_stride=1).eval()  # 4x4 maps at 32 px
    images = torch.randn(6, 3, 32, 32)
    batches = [images[:4], images[4:]]  # the released test pass's batches
    source = SOURCES["own_maps"].build(SourceInputs({"att_metrics_saliency": "released"}, head=HEADS[head],
                                                    test_images=lambda: batches))
    for index in range(6):
        expected, expected_steps = released_transcription(model, batches, head, index, 2)
        saliency = source(model, images[index:index + 1], [0], [index])[0]
        assert torch.allclose(saliency, expected, atol=1e-6)
        masks = source.order(saliency, 2).flatten(1)  # (steps, cells): the cells picked so far
        picked = [torch.nonzero(masks[t] & ~masks[t - 1] if t else masks[t]).flatten().tolist()
                  for t in range(len(masks))]
        assert picked == expected_steps
        assert source.order is topk_step_masks


def released_topk_cells(saliency, cells_per_step):
    """The cells in the order the released loop picks them: topk of the flat map, picked cells set to -1."""
    current, left, cells = saliency.flatten().clone(), saliency.numel(), []
    while left > 0:
        picked = current.topk(k=cells_per_step).indices[:left]
        cells += picked.tolist()
        current[picked] = -1
        left -= cells_per_step
    return cells


@pytest.mark.parametrize("key", ["Del", "Add"])  # the released code's two curves
def test_a_curve_task_in_released_mode_perturbs_in_the_released_order(key):
    """A curve task run with the order of the released source (--att_metrics_saliency released) perturbs the
    cells the released topk loop picks, ties included, against a slow curve painted in that order. The
    saliency is all ties, where topk's order and the stable order differ."""
    from brnpa.metrics.saliency import SOURCES, SourceInputs
    torch.manual_seed(0)
    model = tiny_model(head="br_npa", resnet_stride=1).eval()  # 4x4 maps at 32 px
    image = torch.randn(3, 32, 32)
    source = SOURCES["own_maps"].build(SourceInputs({"att_metrics_saliency": "released"}, head=HEADS["br_npa"],
                                                    test_images=lambda: [image[None]]))
    saliency = torch.tensor([[0., 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1]])
    released_cells = released_topk_cells(saliency, 2)
    stable_cells = sorted(range(16), key=lambda c: (-float(saliency.flatten()[c]), c))
    assert released_cells[:2] != stable_cells[:2]  # the case tells the two orders apart
    with torch.no_grad():
        predicted = model(image[None])["output"].argmax(1).item()
        curve = TASKS[key].compute(lambda images: model(images)["output"], [image], [saliency], [predicted], 2, 5,
                                   source.order, None)["curves"][0]
    expected = slow_curve(lambda images: model(images)["output"], image, saliency, key, 2, cells=released_cells)
    assert torch.allclose(curve.double(), expected, atol=1e-5)


def released_suggestions(trial, max_batch_size, opt_data_aug, master_net, always_sched=False):
    """The released search's suggest calls, transcribed in their order (one process)."""
    values = {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
              "optim": trial.suggest_categorical("optim", ["Adam", "AMSGrad", "SGD"])}
    values["batch_size"] = trial.suggest_int("batch_size", 4 if max_batch_size <= 12 else 12, max_batch_size,
                                             log=True)
    values["dropout"] = trial.suggest_float("dropout", 0, 0.6, step=0.2)
    values["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    if values["optim"] == "SGD":
        values["momentum"] = trial.suggest_float("momentum", 0., 0.9, step=0.1)
        if not always_sched:
            values["use_scheduler"] = trial.suggest_categorical("use_scheduler", [True, False])
    if always_sched:
        values["use_scheduler"] = True
    if opt_data_aug:
        values["brightness"] = trial.suggest_float("brightness", 0, 0.5, step=0.05)
        values["saturation"] = trial.suggest_float("saturation", 0, 0.9, step=0.1)
        values["crop_ratio"] = trial.suggest_float("crop_ratio", 0.8, 1, step=0.05)
    if master_net:
        values["kl_temp"] = trial.suggest_float("kl_temp", 1, 21, step=5)
        values["kl_interp"] = trial.suggest_float("kl_interp", 0.1, 1, step=0.1)
    return values


@pytest.mark.parametrize("max_batch_size, opt_data_aug, master_net, always_sched", [
    (130, True, False, False), (12, False, True, False), (60, True, True, False), (130, True, False, True)])
def test_the_search_samples_what_the_released_search_sampled(max_batch_size, opt_data_aug, master_net,
                                                            always_sched):
    """Seeded random and TPE samplers give the same values and distributions through the option table
    (search.trial_config) as through the released suggest calls, trial after trial; with --always_sched, every
    trial has the scheduler and none samples it."""
    args = parse_args(["--max_batch_size", str(max_batch_size), "--opt_data_aug", str(opt_data_aug),
                       "--master_net", str(master_net), "--m_model_id", "teacher", "--use_scheduler", "False",
                       "--always_sched", str(always_sched), "--optuna", "True"])
    for sampler in (optuna.samplers.RandomSampler, optuna.samplers.TPESampler):
        ours = optuna.create_study(sampler=sampler(seed=3), direction="maximize")
        released = optuna.create_study(sampler=sampler(seed=3), direction="maximize")
        for index in range(15):
            trial, reference = ours.ask(), released.ask()
            config = vars(search.trial_config(trial, args))
            expected = released_suggestions(reference, max_batch_size, opt_data_aug, master_net, always_sched)
            assert {name: config[name] for name in expected} == expected and trial.params == reference.params
            assert trial.distributions == reference.distributions
            ours.tell(trial, index % 4 / 4)
            released.tell(reference, index % 4 / 4)


def test_the_released_test_batch_rule():
    """The released test loader read a val_batch_size of -1 as int(3.5 x max_batch_size): 455 for 130, 42 for
    12 (its batches decide the maps of --att_metrics_saliency released)."""
    assert parse_args(["--val_batch_size", "-1", "--max_batch_size", "130"]).val_batch_size == 455
    assert parse_args(["--val_batch_size", "-1", "--max_batch_size", "12"]).val_batch_size == 42
    assert parse_args(["--val_batch_size", "7"]).val_batch_size == 7
