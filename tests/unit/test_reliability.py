"""Fast reproductions of ways a run could go silently wrong or end in a traceback: names, landing, locks,
config files, statistics, images. Each compares with an independent computation or a hand-made state."""
import argparse
import csv
import fcntl
import json
import math
import os
import socket
import subprocess
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

import processResults
from brnpa.analysis import comparisons, statistics, tables
from brnpa.core import files
from brnpa.runs import results_io
import run_models
from brnpa.runs import lifecycle
from brnpa.runs.args import build_parser, parse_args, read_config_file
from brnpa.core.errors import DataError, LockedError
from helpers import Crash, crash_at
from brnpa.data.load_data import load_rgb
from brnpa.metrics.saliency import POST_HOC_NAMES


def one_line_exit(capsys, argv, *fragments):
    """parse_args(argv) ends with one 'error: ...' line holding every fragment."""
    with pytest.raises(SystemExit):
        parse_args(argv)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_model_id_with_a_dash_is_refused(capsys):
    one_line_exit(capsys, ["--model_id", "my-cnn"], "--model_id", "'-'")
    assert parse_args(["--model_id", "my_cnn.v2"]).model_id == "my_cnn.v2"


def test_a_dash_in_a_file_name_is_a_method_only_when_it_names_one():
    """Files of an older model 'my-cnn' are not files of a model 'my' (a new run of 'my' would delete them)."""
    pattern = results_io.model_file_pattern("my", POST_HOC_NAMES)
    for name in ("attMetrDel_my-cnn.npy", "attMetrDel_my-cnn.json", "attMetrAdd_my-cnn_imgInds.npy",
                 "attMapsmy-cnn_test.npy", "attMapsmy-cnn_epoch3_test.npy", "modelmy-cnn_epoch3_test.csv"):
        assert not pattern.fullmatch(name), name
    for name in ("attMetrDel_my-gradcam.npy", "attMetrDel_my.json", "attMapsmy-rise_test.json",
                 "attMapsmy_epoch3_test.npy", "modelmy_epoch12_test.csv", "my.ini"):
        assert pattern.fullmatch(name), name
    assert results_io.parse_source_id("my-cnn", POST_HOC_NAMES) == ("my-cnn", None)
    assert results_io.parse_source_id("my-gradcam", POST_HOC_NAMES) == ("my", "gradcam")


def write_files(folder, names, tag):
    for name in names:
        (folder / name).write_text(f"{tag} {name}")


OLD_RUN = ["modelm_epoch3_test.csv", "attMapsm_epoch3_test.npy", "normm_epoch3_test.npy", "m.ini",
           "modelm_best.pth", "attMetrDel_m.npy", "attMetrDel_m.json"]
NEW_RUN = ["modelm_epoch5_test.csv", "attMapsm_epoch5_test.npy", "normm_epoch5_test.npy", "m.ini", "modelm_best.pth"]


def test_landing_removes_every_file_of_the_old_run(tmp_path):
    """The new run's best epoch (5) differs from the old one's (3): the old epoch's maps go too."""
    stage = lifecycle.model_stage(str(tmp_path), "m")
    write_files(tmp_path, OLD_RUN + ["modelother_epoch1_test.csv"], "old")
    stage.fresh()
    write_files(tmp_path / ".m.staging", NEW_RUN + ["modelm_last.pth"], "new")
    stage.land(keep=("modelm_last.pth",))
    assert sorted(os.listdir(tmp_path)) == sorted(NEW_RUN + ["modelother_epoch1_test.csv"])
    assert all((tmp_path / name).read_text().startswith("new") for name in NEW_RUN)


# An old run whose best epoch is the new one's: its test CSV has the new one's name, and must go first all the same.
OLD_RUN_SAME_EPOCH = [name.replace("epoch3", "epoch5") for name in OLD_RUN]


@pytest.mark.parametrize("old_run", [OLD_RUN, OLD_RUN_SAME_EPOCH], ids=["other_epoch", "same_epoch"])
@pytest.mark.parametrize("moves_before_the_kill", range(len(NEW_RUN)))
def test_an_interrupted_landing_is_never_read_as_a_finished_run(tmp_path, monkeypatch, moves_before_the_kill,
                                                                old_run):
    """Killed after each move of a landing: while the new test CSV is not in place, no test CSV is (the model
    reads as unfinished); once it is, every new file is; the next run finishes the landing."""
    stage = lifecycle.model_stage(str(tmp_path), "m")
    write_files(tmp_path, old_run, "old")
    stage.fresh()
    write_files(tmp_path / ".m.staging", NEW_RUN, "new")
    records = crash_at(monkeypatch, moves_before_the_kill + 2)  # the first call writes the LANDING record
    with pytest.raises(Crash):
        stage.land()
    monkeypatch.undo()
    assert len(records) == moves_before_the_kill + 2
    csvs = [name for name in os.listdir(tmp_path) if name.endswith("_test.csv")]
    assert csvs in ([], ["modelm_epoch5_test.csv"])
    if csvs:
        assert all((tmp_path / name).read_text().startswith("new") for name in NEW_RUN)
    assert stage.interrupted()
    with stage.opened():
        pass
    assert sorted(os.listdir(tmp_path)) == sorted(NEW_RUN + ["m.lock"]) or sorted(os.listdir(tmp_path)) == \
        sorted(NEW_RUN)
    assert all((tmp_path / name).read_text().startswith("new") for name in NEW_RUN)


def test_an_interrupt_inside_an_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C while the array is being written: the interrupt goes on, the old file stays, no .tmp is left."""
    target = tmp_path / "a.npy"
    files.atomic_save_npy(str(target), np.arange(3))

    def interrupted_save(file, array):
        file.write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_save_npy(str(target), np.arange(5))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["a.npy"] and np.load(target).tolist() == [0, 1, 2]


def test_an_atomic_write_is_flushed_before_and_after_its_rename(tmp_path, monkeypatch):
    """The file's bytes reach the disk before the rename, its folder's entry after it."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b)))
    target = tmp_path / "a.json"
    files.atomic_write_json(str(target), {"a": 1})
    tmp_name = f"{target}.{os.getpid()}.tmp"
    assert events == [("fsync", tmp_name), ("replace", str(target)), ("fsync", str(tmp_path))]


def test_a_landing_is_flushed_before_its_record_goes(tmp_path, monkeypatch):
    """The landed names are flushed (an fsync of the experiment folder) before the staging folder, which
    records the landing, is removed."""
    stage = lifecycle.model_stage(str(tmp_path), "m")
    stage.fresh()
    write_files(tmp_path / ".m.staging", NEW_RUN, "new")
    synced = []
    real_sync = files.sync_to_disk
    monkeypatch.setattr(files, "sync_to_disk", lambda path: (synced.append((path, os.path.isdir(stage.folder))),
                                                                  real_sync(path)))
    stage.land()
    assert (str(tmp_path), True) in synced  # the folder was flushed while the staging folder still existed


def test_big_images_sets_the_authors_sizes():
    assert parse_args(["--big_images", "True"]).img_size == 448
    assert parse_args(["--big_images", "False"]).img_size == 224
    assert parse_args(["--big_images", "False", "--img_size", "64"]).img_size == 64


def test_the_seed_defines_a_run():
    """Two runs that differ only in --seed are two runs, and a remake hint keeps the seed."""
    from brnpa.runs.args import run_differences, run_signature
    first, second = parse_args(["--seed", "1"]), parse_args(["--seed", "2"])
    assert run_signature(first) != run_signature(second) and "seed" in run_differences(first, second)
    assert "--seed 2" in lifecycle.train_command(second, "cnn")
    assert "--seed" not in lifecycle.train_command(first, "cnn")  # the config's value needs no word


def write_config_text(tmp_path, text, name="c.config"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_a_key_set_twice_names_both_lines(tmp_path, capsys):
    path = write_config_text(tmp_path, "[default]\nlr = 0.1\nepochs = 3\nlr = 0.2\n")
    with pytest.raises(ValueError, match=r"'lr' is set twice, on lines 2 and 4"):
        read_config_file(path, build_parser())
    one_line_exit(capsys, ["-c", path], "set twice")


def test_a_byte_order_mark_is_not_a_key(tmp_path):
    path = write_config_text(tmp_path, "\ufeff[default]\nlr = 0.25\n")
    assert parse_args(["-c", path]).lr == 0.25


def test_the_help_hint_is_printed_once(tmp_path, capsys):
    err = one_line_exit(capsys, ["-c", write_config_text(tmp_path, "learning_rate = 3\n")], "unknown key")
    assert err.count("--help") == 1


def test_seed_range_is_checked_up_front(capsys):
    one_line_exit(capsys, ["--seed", "-1"], "--seed must be in [0, 4294967295]")
    one_line_exit(capsys, ["--seed", str(2 ** 32)], "--seed must be")


def test_welch_test_with_unequal_sizes_and_variances():
    """Against the formula: t = (m1 - m2) / sqrt(v1/n1 + v2/n2), Welch-Satterthwaite degrees of freedom."""
    first = np.array([0.1, 0.2, 0.15, 0.3, 0.25, 0.22, 0.18])
    second = np.array([0.4, 0.9, 0.1])
    _, p_values = comparisons.welch_matrix({"a": first, "b": second})
    v1, v2 = first.var(ddof=1) / len(first), second.var(ddof=1) / len(second)
    t = (first.mean() - second.mean()) / math.sqrt(v1 + v2)
    dof = (v1 + v2) ** 2 / (v1 ** 2 / (len(first) - 1) + v2 ** 2 / (len(second) - 1))
    expected = 2 * stats.t.sf(abs(t), dof)
    assert p_values[0, 1] == pytest.approx(expected, rel=1e-9) and p_values[1, 0] == pytest.approx(expected)
    student = stats.ttest_ind(first, second, equal_var=True).pvalue
    assert abs(student - expected) > 0.01  # the samples tell the two tests apart


def test_t_interval_uses_n_minus_1_degrees_of_freedom():
    values = [0.2, 0.4, 0.9]
    mean, half = statistics.mean_ci(values)
    sd = math.sqrt(sum((v - 0.5) ** 2 for v in values) / 2)
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(4.302652729911275 * sd / math.sqrt(3), rel=1e-9)  # t(0.975, 2 dof)


def test_validation_sees_the_test_transform(tmp_path):
    """No random crop, flip or jitter in validation: two passes over one image give the same tensor, the one
    the test transform gives."""
    from brnpa.jobs import training
    from brnpa.data.load_data import Geometry, build_transform
    image_path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image_path)
    options = parse_args(["--img_size", "32", "--crop_ratio", "0.8", "--num_workers", "0", "--brightness", "0.5"])
    samples = {"train": [(str(image_path), 0)], "val": [(str(image_path), 0)]}
    _, val_loader = training.build_train_loaders(options, samples)
    torch.manual_seed(0)
    first = val_loader.dataset[0][0]
    torch.manual_seed(1)
    second = val_loader.dataset[0][0]
    expected = build_transform(Geometry(32, 0.8))(load_rgb(str(image_path)))
    assert torch.equal(first, second) and torch.equal(first, expected)


def test_two_holders_of_one_lock_conflict(tmp_path):
    with lifecycle.lock(str(tmp_path), "m"):
        with pytest.raises(LockedError, match=rf"m is in use: .*m\.lock is held by pid {os.getpid()}"):
            with lifecycle.lock(str(tmp_path), "m"):
                pass
    with lifecycle.lock(str(tmp_path), "m"):  # released at the end of the block
        pass


def test_a_lock_recorded_by_a_dead_process_is_taken_over(tmp_path):
    """The process died, but a child of it (a loader worker) still holds the flock: taken over at once."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "m.lock"
    orphan = open(path, "a+")  # stands for the worker: it holds the flock on the file the dead process wrote
    fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
    orphan.write(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "-", "command": "-"}))
    orphan.flush()
    try:
        with lifecycle.lock(str(tmp_path), "m"):
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        orphan.close()


@pytest.mark.parametrize("done, staged, overwrite, resume, expected", [
    (None, None, False, True, "fresh"),  # nothing there
    ("A", None, False, True, "done"),  # landed with the wanted options
    ("A", None, True, True, "fresh"),  # --overwrite
    ("B", None, False, True, "fresh"),  # landed with other options
    ("B", "A", False, True, "resume"),  # an interrupted run of the wanted options
    ("B", "A", False, False, "fresh"),  # ... and --resume False
    (None, "B", False, True, "fresh"),  # an interrupted run of other options
    ("A", "A", True, True, "resume"),  # --overwrite with a run of it interrupted: resumes the new run
])
def test_plan_of_a_run(done, staged, overwrite, resume, expected):
    """lifecycle.plan on every combination that matters, the wanted signature being A."""
    signature = {"A": {"lr": 0.1}, "B": {"lr": 0.2}, None: None}
    assert lifecycle.plan(signature[done], {"lr": 0.1}, signature[staged], overwrite, resume) == expected


def test_a_lock_in_a_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(lifecycle.UserError, match="does not exist"):
        with lifecycle.lock(str(tmp_path / "renamed"), "m"):
            pass


def test_a_huge_image_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 megapixels, 50 kB on disk
    with pytest.raises(DataError, match=r"huge\.png is 20000x20000, more than the 250 megapixels"):
        load_rgb(str(path))


def test_a_large_image_loads_without_pillow_warnings(tmp_path, monkeypatch):
    """Pillow's own guard is replaced by ours: above its threshold it would warn, or refuse at twice it."""
    import PIL.Image
    path = tmp_path / "large.png"
    Image.new("RGB", (60, 50)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would refuse 3000 pixels (> 2 x 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(str(path)).size == (60, 50)


def test_remake_hints_keep_the_runs_options():
    """Followed literally, the hint trains the same experiment, with the same data and options."""
    options = parse_args(["-c", "config_demo.config", "--model_id", "cnn", "--head", "cnn", "--stride_lay3", "2",
                          "--stride_lay4", "2", "--optuna", "False", "--exp_id", "other", "--epochs", "3",
                          "--data_dir", "/somewhere/data", "--results_dir", "/somewhere/results"])
    hint = lifecycle.train_command(options, "cnn", "--overwrite True")
    assert hint.startswith("CONFIG=config_demo.config ./train.sh cnn ")
    for words in ("--exp_id other", "--epochs 3", "--optuna False", "--data_dir /somewhere/data",
                  "--results_dir /somewhere/results", "--overwrite True"):
        assert words in hint, hint
    assert "--lr" not in hint and "--stride_lay3" not in hint  # as the config file and the model table say
    curves = lifecycle.train_command(options, "cnn", script="get_dauc_scores.sh")
    assert curves == ("CONFIG=config_demo.config ./get_dauc_scores.sh cnn --exp_id other "
                      "--data_dir /somewhere/data --results_dir /somewhere/results")


def test_run_models_passes_seed_to_trainval(monkeypatch, capsys):
    """--seed is not an abbreviation of run_models' --seeds: it reaches trainVal.py, after the loop's own."""
    calls = []
    monkeypatch.setattr(run_models, "call_trainval", calls.append)
    monkeypatch.setattr(processResults, "main", lambda argv: None)
    run_models.main(["--models", "cnn", "--seeds", "1", "--exp_id", "demo", "--seed", "2"])
    trainings = [argv for argv in calls if "--attention_metrics" not in argv]
    assert len(trainings) == 1  # one seed
    argv = trainings[0]
    assert argv[len(argv) - 1 - argv[::-1].index("--seed") + 1] == "2"  # the last --seed wins in argparse
    assert parse_args(argv).seed == 2


def test_every_parser_refuses_abbreviations():
    import brnpa.data.prepare_cub
    import brnpa.data.synthetic
    import plot_maps
    for main in (processResults.main, run_models.main, plot_maps.main, brnpa.data.synthetic.main,
                 brnpa.data.prepare_cub.main):
        with pytest.raises(SystemExit) as raised:
            main(["--debu", "True"])
        assert raised.value.code == 2, main
    with pytest.raises(SystemExit):
        parse_args(["--epoch", "3"])
    assert isinstance(build_parser(), argparse.ArgumentParser) and not build_parser().allow_abbrev


def test_high_res_demo_maps_are_16x16():
    """The demo config's distilled high-res model has (3, 16, 16) maps on 64 px images, and its curves take
    16 steps of 16 cells with --att_metrics_few_steps (the run_models default)."""
    from brnpa.jobs.attention_metrics import step_plan
    from helpers import REPO_ROOT
    from brnpa.core.model_ids import model_options
    from brnpa.models.net import build_model
    from brnpa.runs.runtime import model_config
    options = parse_args(["-c", os.path.join(REPO_ROOT, "config_demo.config"), "--model_id", "br_npa_high_res_distill",
                          *model_options("br_npa_high_res_distill"), "--att_metrics_few_steps", "True"])
    torch.manual_seed(0)
    maps = build_model(model_config(options)).eval()(torch.randn(1, 3, 64, 64))["att_maps"]
    assert maps.shape == (1, 3, 16, 16)
    assert step_plan(options, 16, 16) == (16, 16)


def test_a_tiny_clean_score_is_counted_and_the_median_shown(tmp_path):
    """AD and ADD divide by the clean score: an image whose clean score is 1e-6 gives an ADD of about -2e5 that
    swamps the mean. The note counts such images per source, the CSV holds the median beside the mean, and the
    table prints the number in scientific notation instead of widening the column."""
    from brnpa.metrics.scores import SCORES
    scores = {"a": np.array([[0.9, 0.8, 0.45], [0.8, 0.8, 0.4], [1e-6, 0.5, 0.2], [0.5, 0.6, 0.25]]),
              "b": np.array([[0.9, 0.9, 0.3], [0.6, 0.3, 0.3], [0.7, 0.7, 0.35], [0.8, 0.6, 0.4]])}
    add = {source: SCORES["ADD"].per_image({"scores": array}) for source, array in scores.items()}
    assert add["a"][2] == pytest.approx((1e-6 - 0.2) / 1e-6)  # about -2e5
    denominators = {name: {source: SCORES[name].denominator({"scores": array}) for source, array in scores.items()}
                    for name in ("AD", "ADD")}
    notes = tables.tiny_denominator_notes(denominators, 1e-3)
    assert notes == [f"{name}: images whose clean score is below 0.001, which can dominate the mean (the median is "
                     f"beside it): a 1" for name in ("AD", "ADD")]
    assert tables.tiny_denominator_notes(denominators, 1e-7)[0].endswith(": none")
    tables.write_score_csvs(str(tmp_path), SCORES["ADD"], add, {"a": [3, 5, 8, 9], "b": [3, 5, 7, 9]})
    with open(tmp_path / "attMetrics_ADD_pop.csv") as file:
        pop = list(csv.reader(file))
    # one column per test index, empty where a source was not scored on that image
    assert pop[0] == ["model_id", "img_3", "img_5", "img_7", "img_8", "img_9"]
    assert pop[1][3] == "" and pop[2][4] == "" and float(pop[2][3]) == pytest.approx(add["b"][2])
    with open(tmp_path / "attMetrics_ADD.csv") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["model_id", "mean", "median"]
    assert float(rows[1][2]) == pytest.approx(0.5)  # the median of 0.5, 0.5, -2e5, 0.5 by hand
    assert float(rows[2][2]) == pytest.approx(0.5)  # 2/3, 0.5, 0.5, 0.5
    text = tables.fmt(add["a"].mean(), 123456.0)
    assert text == f"{add['a'].mean():.2e} ±1.23e+05" and len(text.split(" ±")[0]) <= 9
    assert tables.fmt(0.246, 0.062) == "0.246 ±0.062"  # the usual case is unchanged


@pytest.mark.parametrize("argv,fragment", [
    (["--always_sched", "True"], "--always_sched True changes a search only"),
    (["--backbone", "resnet18", "--end_relu", "False", "--end_relu_blocks", "first"], "changes nothing on resnet18"),
    (["--backbone", "resnet34", "--end_relu", "False", "--end_relu_blocks", "first"], "changes nothing on resnet34")])
def test_an_option_that_would_change_nothing_is_refused(capsys, argv, fragment):
    """Recorded in the run's .ini, these would make another run (trained again, its sets deleted) computing the
    same thing: --always_sched outside a search, the end-ReLU placement on basic blocks. Where they do change the
    run, they are accepted."""
    one_line_exit(capsys, argv, fragment)
    assert parse_args(["--always_sched", "True", "--optuna", "True"]).always_sched
    assert not parse_args(["--backbone", "resnet50", "--end_relu", "False", "--end_relu_blocks", "first"]).end_relu
