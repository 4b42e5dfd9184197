"""Run integrity drills: a model's files always come from one run, runs resume, bad inputs get one line.

Each test reproduces a way a user can break a run (kill, rerun, two processes, bad input, full disk)
on the tiny synthetic set and checks what is left on disk."""
import csv
import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import torch
from PIL import Image

from brnpa.core import files
from brnpa.runs import lifecycle
import trainVal
from brnpa.runs.args import build_parser, load_run_config, parse_args, write_config
from helpers import REPO_ROOT, TINY_CONFIG, Crash, script_env
from brnpa.core.model_ids import model_options
from brnpa.data.load_data import load_rgb

SCRIPT_OPTIONS = {"train.sh": (), "get_dauc_scores.sh": ("--optuna", "False", "--attention_metrics", "Del"),
                  "get_single_step_scores.sh": ("--optuna", "False", "--attention_metrics", "Single")}


@pytest.fixture
def setup(tmp_path, tiny_synth):
    """(config path, data_dir copy, results dir): a private copy of the tiny data each test can damage."""
    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    config = tmp_path / "tiny.config"
    config.write_text(TINY_CONFIG)
    return str(config), str(data), tmp_path / "results"


def command(script, config, data, results, *extra):
    return [os.path.join(REPO_ROOT, script), *extra, "--data_dir", data, "--results_dir", str(results)]


def run(script, config, data, results, *extra):
    return subprocess.run(command(script, config, data, results, *extra), capture_output=True, text=True, cwd="/",
                          env=script_env(config))


def start(script, config, data, results, *extra):
    return subprocess.Popen(command(script, config, data, results, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/", env=script_env(config))


def ok(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def table_options(model_id):
    """The options the model id table adds for a model id (what the scripts pass)."""
    return model_options(model_id)


def main(script, config, data, results, model_id, *extra):
    """What `CONFIG=config ./script model_id extra...` does, in this process (no start-up cost):
    None on success, else the exit message."""
    argv = ["-c", config, "--model_id", model_id, *table_options(model_id), *extra, *SCRIPT_OPTIONS[script],
            "--data_dir", data, "--results_dir", str(results)]
    try:
        trainVal.main(argv)
    except SystemExit as exit_:
        return str(exit_.code)
    return None


def one_line(message, *fragments):
    """An in-process failure: one 'error: ...' line holding every fragment."""
    assert message is not None and message.startswith("error: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def one_line_error(completed, *fragments):
    """The run failed with a single 'error: ...' line holding every fragment, and no traceback."""
    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in completed.stderr and "usage:" not in completed.stderr, \
        completed.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def folder_state(folder):
    """{name: bytes} of every result file in a folder (not recursive; a killed run's released lock file,
    which the next run takes over, is not a result)."""
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))
            if (folder / name).is_file() and not name.endswith(".lock")}


def landed(results, model_id="cnn"):
    return lifecycle.LandedRun(str(results / "e2e"), model_id)


def kill_after_line(process, prefix):
    """SIGKILL the process as soon as it prints a stderr line starting with prefix; the lines read so far."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(prefix):
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    # the process really ran up to that line (not a start-up failure that a comparison would then miss)
    assert seen and seen[-1].startswith(prefix), "".join(seen)[-3000:]
    return seen


def test_killed_rerun_leaves_the_previous_run_whole(setup):
    """Repro 1: a rerun killed after its first checkpoint leaves the old run's files, all of one run."""
    config, data, results = setup
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False") is None
    assert main("get_dauc_scores.sh", config, data, results, "cnn") is None
    before = folder_state(results / "e2e")
    rerun = start("train.sh", config, data, results, "cnn", "--optuna", "False", "--lr", "0.001", "--epochs", "4",
                  "--img_size", "96")
    kill_after_line(rerun, "epoch 1:")
    assert folder_state(results / "e2e") == before
    model = landed(results)
    model.load_model()  # checkpoint, .ini and test CSV agree (a run id mismatch raises)
    assert main("get_dauc_scores.sh", config, data, results, "cnn") is None
    with open(results / "e2e" / "attMetrDel_cnn.json") as file:
        assert json.load(file)["run_id"] == model.run_id


def test_retraining_removes_the_old_curves(setup, capsys):
    """Repro 2: a new run of a model removes the curves of the old one."""
    import processResults
    config, data, results = setup
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False") is None
    assert main("get_dauc_scores.sh", config, data, results, "cnn") is None
    first = landed(results).run_id
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False", "--lr", "0.001") is None
    assert landed(results).run_id != first
    assert not glob.glob(str(results / "e2e" / "attMetr*"))
    capsys.readouterr()
    processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    assert "cnn" in capsys.readouterr().out


def test_stale_lock_of_a_dead_process_is_taken_over(setup):
    """A killed training left its lock: the recorded process is dead, and a loader worker it forked still holds
    the flock. The next training takes the lock over and finishes."""
    config, data, results = setup
    os.makedirs(results / "e2e")
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = open(results / "e2e" / "cnn.lock", "a+")  # the worker's inherited handle, flock held
    fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
    orphan.write(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then", "command": "-"}))
    orphan.flush()
    try:
        assert main("train.sh", config, data, results, "cnn", "--optuna", "False") is None
    finally:
        orphan.close()
    assert not (results / "e2e" / "cnn.lock").exists() and landed(results).run_id


def test_finished_run_is_not_trained_again(setup, capsys):
    """Repro 4 and the finished-run rule: --epochs 0 is refused; the same command does not train again;
    another --seed is another run, and trains; --overwrite True trains again."""
    config, data, results = setup
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False") is None
    before = folder_state(results / "e2e")
    capsys.readouterr()
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False", "--epochs", "0") == "2"
    one_line(capsys.readouterr().err.strip(), "--epochs must be at least 1")
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False") is None
    again = capsys.readouterr()
    assert "already has a finished run" in again.out and "epoch 1:" not in again.err
    assert folder_state(results / "e2e") == before
    first_seed = landed(results).run_id
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False", "--seed", "2") is None
    other_seed = capsys.readouterr()
    assert "already has a finished run" not in other_seed.out and "epoch 1:" in other_seed.err
    assert landed(results).run_id != first_seed and landed(results).args.seed == 2
    first = landed(results).run_id
    assert main("train.sh", config, data, results, "cnn", "--optuna", "False", "--seed", "2", "--overwrite",
                "True") is None
    assert landed(results).run_id != first and landed(results).args.seed == 2


def test_class_folders_must_match(setup):
    """Repro 5: a renamed test class folder is refused before anything is written."""
    config, data, results = setup
    os.rename(os.path.join(data, "tiny_test", "class_00"), os.path.join(data, "tiny_test", "class_zz"))
    one_line(main("train.sh", config, data, results, "cnn", "--optuna", "False"), "differ from", "class_zz",
             "class_00")
    assert not results.exists()


def test_truncated_jpeg_is_refused_up_front(setup, capsys):
    """Repro 6: a truncated image in the test folder is found before training, not after it."""
    config, data, results = setup
    path = os.path.join(data, "tiny_test", "class_01", "truncated.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)
    one_line(main("train.sh", config, data, results, "cnn", "--optuna", "False"), "unreadable image",
             "truncated.jpg")
    assert "epoch 1:" not in capsys.readouterr().err and not results.exists()


@pytest.mark.parametrize("option, value, message", [
    ("--att_metrics_img_nb", "0", "--att_metrics_img_nb must be -1 (all test images) or at least 1"),
    ("--att_metrics_img_nb", "-5", "--att_metrics_img_nb must be -1"),
    ("--att_metrics_batch_size", "0", "--att_metrics_batch_size must be at least 1"),
    ("--lr", "-1", "--lr must be a positive number"),
    ("--nb_att_maps", "0", "--nb_att_maps must be at least 1"),
    ("--attention", "maybe", "expected True or False"),
])
def test_bad_options_are_one_line(setup, option, value, message):
    """Repro 7 and 9: one line, no usage block, no traceback (through the script, as a user types it)."""
    config, data, results = setup
    script = "get_dauc_scores.sh" if option.startswith("--att_metrics") else "train.sh"
    one_line_error(run(script, config, data, results, "cnn", option, value), message)
    assert not results.exists()


def test_results_dir_under_a_file(setup, tmp_path):
    config, data, _ = setup
    (tmp_path / "a_file").write_text("x")
    one_line(main("train.sh", config, data, tmp_path / "a_file" / "results", "cnn", "--optuna", "False"),
             "cannot create the results folder")


def test_truncated_teacher_and_curves_are_one_line(setup):
    """Repro 7: a truncated teacher checkpoint, a truncated curve file in processResults."""
    import processResults
    config, data, results = setup
    assert main("train.sh", config, data, results, "br_npa_low_res", "--optuna", "False") is None
    assert main("get_dauc_scores.sh", config, data, results, "br_npa_low_res") is None
    curves = results / "e2e" / "attMetrDel_br_npa_low_res.npy"
    curves.write_bytes(curves.read_bytes()[:100])
    with pytest.raises(SystemExit) as exit_:
        processResults.main(["--exp_id", "e2e", "--results_dir", str(results), "--vis_dir", str(results / "vis")])
    one_line(str(exit_.value.code), "cannot read", "attMetrDel_br_npa_low_res.npy",
             f"CONFIG={config} ./get_dauc_scores.sh br_npa_low_res")
    checkpoint = results / "e2e" / "modelbr_npa_low_res_best.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    one_line(main("train.sh", config, data, results, "br_npa_high_res_distill", "--optuna", "False"),
             "teacher model 'br_npa_low_res'", "cannot read checkpoint", "truncated")
    assert not glob.glob(str(results / "e2e" / "*distill*")) and not glob.glob(str(results / "e2e" / ".*distill*"))
    # a truncated attention-map file, as a full disk or a cut copy leaves it: one line in every task script
    att_maps = glob.glob(str(results / "e2e" / "attMapsbr_npa_low_res_epoch*_test.npy"))[0]
    with open(att_maps, "r+b") as file:
        file.truncate(200)
    for script in ("get_dauc_scores.sh", "get_single_step_scores.sh"):
        one_line(main(script, config, data, results, "br_npa_low_res", "--overwrite", "True"), "cannot read",
                 os.path.basename(att_maps), f"CONFIG={config} ./train.sh br_npa_low_res")


def test_hash_in_paths_and_comments(tmp_path):
    """Repro 8: a '#' inside a path survives the .ini; '#' after a space still starts a comment."""
    args = parse_args(["--data_dir", "/data/set#2", "--results_dir", "/results/#a"])
    write_config(args, str(tmp_path / "x.ini"), run_id="abc")
    back, metadata = load_run_config(str(tmp_path / "x.ini"))
    assert back.data_dir == "/data/set#2" and back.results_dir == "/results/#a" and metadata["run_id"] == "abc"
    from brnpa.runs.args import read_config_file
    (tmp_path / "c.config").write_text("# comment\nlr = 0.5 # after a space\ndata_dir = /d#1\n")
    values = read_config_file(str(tmp_path / "c.config"), build_parser())
    assert values == {"lr": 0.5, "data_dir": "/d#1"}


def test_16_bit_grayscale_png(tmp_path):
    """Repro 8: a 16-bit grayscale PNG keeps its contrast instead of loading white."""
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = np.asarray(load_rgb(str(tmp_path / "g16.png")))
    expected = np.round(values / 257).astype(np.uint8)
    assert loaded.shape == (2, 2, 3) and (loaded == expected[..., None]).all()


def metrics_rows(path):
    """The per-epoch CSV without its wall-clock column."""
    with open(path) as file:
        return [{key: float(value) for key, value in row.items() if key != "seconds"} for row in csv.DictReader(file)]


def test_killed_training_resumes_exactly(setup, tmp_path, monkeypatch, capsys):
    """Repro 10: SIGKILL during epoch 2, rerun: it resumes after epoch 1 and ends with the checkpoint and
    metrics of an uninterrupted run (CPU, same seed, 1e-6)."""
    config, data, results = setup
    options = ("cnn", "--optuna", "False", "--epochs", "3", "--img_size", "96", "--dropout", "0.2",
               "--max_worse_epoch_nb", "10")
    assert main("train.sh", config, data, tmp_path / "straight", *options) is None  # in this process
    killed = start("train.sh", config, data, results, *options)
    kill_after_line(killed, "epoch 1:")
    staging = results / "e2e" / ".cnn.staging"
    assert (staging / "modelcnn_last.pth").exists() and not glob.glob(str(results / "e2e" / "modelcnn_epoch*"))
    capsys.readouterr()
    assert main("train.sh", config, data, results, *options) is None  # the rerun, in this process
    resumed = capsys.readouterr().err
    assert "resuming 'cnn' after epoch 1" in resumed and "epoch 1:" not in resumed
    assert not staging.exists()
    straight = torch.load(tmp_path / "straight" / "e2e" / "modelcnn_best.pth", weights_only=True)
    again = torch.load(results / "e2e" / "modelcnn_best.pth", weights_only=True)
    assert straight["epoch"] == again["epoch"]
    for name, tensor in straight["model"].items():
        assert torch.allclose(tensor.float(), again["model"][name].float(), atol=1e-6), name
    straight_rows = metrics_rows(tmp_path / "straight" / "e2e" / "modelcnn_metrics.csv")
    again_rows = metrics_rows(results / "e2e" / "modelcnn_metrics.csv")
    assert len(straight_rows) == len(again_rows) == 3
    for first, second in zip(straight_rows, again_rows):
        assert first.keys() == second.keys() and all(abs(first[k] - second[k]) <= 1e-6 for k in first)
    # --resume False starts over (the interruption is injected in this process: a crash after epoch 1's save)
    from brnpa.runs import checkpoints
    real_save_last = checkpoints.Checkpoints.save_last

    def crash_after_saving(self, *state):
        real_save_last(self, *state)
        raise Crash("killed after epoch 1")
    monkeypatch.setattr(checkpoints.Checkpoints, "save_last", crash_after_saving)
    with pytest.raises(Crash):
        main("train.sh", config, data, results, *options, "--overwrite", "True")
    monkeypatch.undo()
    assert (results / "e2e" / ".cnn.staging" / "modelcnn_last.pth").exists()
    capsys.readouterr()
    assert main("train.sh", config, data, results, *options, "--overwrite", "True", "--resume", "False") is None
    fresh = capsys.readouterr().err
    assert "starting 'cnn' over" in fresh and "epoch 1:" in fresh


def test_killed_curves_resume_exactly(setup, capsys):
    """Repro 10: SIGKILL a DAUC run half-way, rerun: the curves equal an uninterrupted run's."""
    config, data, results = setup
    assert main("train.sh", config, data, results, "br_npa_low_res", "--optuna", "False", "--img_size", "64") is None
    dauc = ("br_npa_low_res", "--att_metrics_img_nb", "-1", "--att_metrics_batch_size", "1")
    assert main("get_dauc_scores.sh", config, data, results, *dauc) is None  # in this process: no start-up cost
    straight = np.load(results / "e2e" / "attMetrDel_br_npa_low_res.npy")
    os.remove(results / "e2e" / "attMetrDel_br_npa_low_res.npy")
    killed = start("get_dauc_scores.sh", config, data, results, *dauc)
    partial = results / "e2e" / ".attMetrDel_br_npa_low_res.staging" / "partial.pth"
    while not partial.exists() and killed.poll() is None:  # kill once the first progress is saved
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (results / "e2e" / "attMetrDel_br_npa_low_res.npy").exists()
    capsys.readouterr()
    assert main("get_dauc_scores.sh", config, data, results, *dauc) is None  # the rerun, in this process
    assert "resuming the deletion curves of br_npa_low_res after" in capsys.readouterr().err
    assert np.allclose(np.load(results / "e2e" / "attMetrDel_br_npa_low_res.npy"), straight, atol=1e-6)
    assert not (results / "e2e" / ".attMetrDel_br_npa_low_res.staging" / "partial.pth").exists()


def test_curves_of_a_model_that_draws_random_numbers_do_not_depend_on_what_ran_before(setup, monkeypatch, capsys):
    """The BR-NPA ablation with random vectors draws from torch's global generator in every forward pass. Its
    curves must not depend on what the process did before the task (run_models.py runs every task in one
    process, a user may run the script alone): the second run follows 1000 other draws, and gives the same
    curves and the same predicted classes. Nor on a resumption: a third run crashes after its second progress
    save (injected), and its rerun resumes and gives them too."""
    config, data, results = setup
    model_id = "br_npa_high_res_random_vectors"
    assert main("train.sh", config, data, results, model_id, "--optuna", "False") is None
    dauc = (model_id, "--att_metrics_img_nb", "-1")
    assert main("get_dauc_scores.sh", config, data, results, *dauc) is None
    arrays = [results / "e2e" / f"attMetrDel_{model_id}{suffix}.npy" for suffix in ("", "_preds")]
    first = [np.load(path) for path in arrays]
    torch.rand(1000)  # what another task of the same process would have drawn
    assert main("get_dauc_scores.sh", config, data, results, *dauc, "--overwrite", "True") is None
    for path, before in zip(arrays, first):
        assert np.array_equal(np.load(path), before)
    os.remove(arrays[0])
    real_save, saves = files.atomic_save_torch, []

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(args[0])
        if len(saves) == 2:
            raise Crash("killed after the second progress save")
    monkeypatch.setattr(files, "atomic_save_torch", save_then_crash)
    with pytest.raises(Crash):
        main("get_dauc_scores.sh", config, data, results, *dauc)
    monkeypatch.setattr(files, "atomic_save_torch", real_save)
    capsys.readouterr()
    assert main("get_dauc_scores.sh", config, data, results, *dauc) is None
    assert "resuming the deletion curves" in capsys.readouterr().err
    for path, before in zip(arrays, first):
        assert np.array_equal(np.load(path), before)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real full disk. Skipped where mounting is not allowed."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    completed = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                               capture_output=True, text=True)
    if completed.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({completed.stderr.strip() or 'mount failed'})")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def temporary_files(folder):
    """Every temporary file under folder, hidden folders included (a run writes in .<ID>.staging/)."""
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if ".tmp" in name]


def test_a_full_disk_without_a_mount(setup, monkeypatch):
    """ENOSPC on the first checkpoint, made by hand: one line, no temporary file, and the rerun trains."""
    import errno
    import trainVal
    config, data, results = setup
    real_replace = os.replace

    def full_disk(source, target):
        if str(target).endswith("_best.pth"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real_replace(source, target)
    monkeypatch.setattr(os, "replace", full_disk)
    argv = ["-c", config, "--data_dir", data, "--results_dir", str(results), "--model_id", "cnn", "--head", "cnn"]
    with pytest.raises(SystemExit, match="the disk is full: could not write .*modelcnn_best.pth") as raised:
        trainVal.main(argv)
    assert "\n" not in str(raised.value.code)
    assert temporary_files(results) == [] and (results / "e2e" / ".cnn.staging").is_dir()
    monkeypatch.undo()
    trainVal.main(argv)
    assert landed(results).run_id


def test_full_disk_is_one_line_and_leaves_no_temporary_file(setup, small_disk, monkeypatch):
    """Repro 7: a full disk during training and during a search: one line, no temporary file."""
    import trainVal
    config, data, _ = setup
    one_line(main("train.sh", config, data, small_disk, "cnn", "--optuna", "False"), "MiB free",
             str(small_disk))  # the check before anything is written
    monkeypatch.setattr(lifecycle, "check_results_folder", lambda folder, needed: os.makedirs(folder, exist_ok=True))
    argv = ["-c", config, "--data_dir", data, "--results_dir", str(small_disk), "--model_id", "cnn",
            "--attention", "False"]
    with pytest.raises(SystemExit, match="the disk is full"):
        trainVal.main(argv)
    assert temporary_files(small_disk) == []
    shutil.rmtree(small_disk / "e2e")
    # leave 400 KiB: room for the study's database, not for a checkpoint (about 750 KiB)
    (small_disk / "filler").write_bytes(b"0" * (shutil.disk_usage(small_disk).free - 400 * 1024))
    with pytest.raises(SystemExit, match="the disk is full"):
        trainVal.main(argv + ["--optuna", "True", "--optuna_trial_nb", "2", "--max_batch_size", "8"])
    assert temporary_files(small_disk) == []
