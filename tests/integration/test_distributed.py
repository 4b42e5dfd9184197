"""torchrun with the gloo backend on the CPU: two processes train like one with the same global batch, and
write the same test artifacts and DAUC curves."""
import csv
import glob
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import trainVal
from helpers import REPO_ROOT, TINY_CONFIG

# No randomness that depends on the process: no dropout, flip, colour jitter or random crop (crop ratio 1).
# One optimiser step: 8 of the 36 training-folder images train (train_prop 0.2223), one global batch of 8 (4 per
# process), plain SGD (no momentum): the step moves each weight by -lr * its gradient, so the two runs can be
# compared on what rounding alone can change (test_two_processes_train_like_one).
DETERMINISTIC = ["--model_id", "br_npa_low_res", "--attention", "True", "--br_npa", "True", "--stride_lay3", "2",
                 "--stride_lay4", "2", "--dropout", "0", "--hflip", "False", "--brightness", "0", "--saturation", "0",
                 "--crop_ratio", "1", "--train_prop", "0.2223", "--epochs", "1", "--batch_size", "8",
                 "--max_batch_size_single_pass", "8", "--optim", "SGD", "--momentum", "0", "--lr", "0.1",
                 "--cuda", "False"]
# The largest difference between the two runs' weights allowed, relative to how far the step moved the tensor.
# The runs add the same float32 numbers in other orders (each process sums its 4 images, then the processes'
# sums are added). A reassociated float32 sum of n terms is off by at most (n - 1) * 2^-24 of the sum of their
# magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 4.2); the longest sums of
# this step are over 8 images x 32 x 32 positions (the BatchNorm statistics and weight gradients of the first
# stage), 8191 * 2^-24 = 4.9e-4, and a gradient goes through about 20 such layers: 1e-2. Measured on an AMD EPYC
# with oneDNN limited to SSE4.1, to AVX2 and unlimited: at most 4.2e-5; each process normalising with its own
# 4 images (--sync_bn False) gives 0.46 or more on every tensor.
ROUNDING_TOLERANCE = 1e-2

def torchrun(nproc, argv):
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                str(nproc), os.path.join(REPO_ROOT, "trainVal.py"), *argv],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


@pytest.fixture(scope="module")
def two_runs(tiny_synth, tmp_path_factory):
    """The same training, once in this process and once with torchrun and 2 processes (SyncBatchNorm)."""
    root = tmp_path_factory.mktemp("ddp")
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG)
    common = ["-c", str(config), "--data_dir", tiny_synth, *DETERMINISTIC, "--sync_bn", "True"]
    trainVal.main(common + ["--results_dir", str(root / "one")])
    completed = torchrun(2, common + ["--results_dir", str(root / "two")])
    return common, root, completed


def test_rank_0_announces_the_processes(two_runs):
    _, _, completed = two_runs
    assert "distributed: 2 processes, backend gloo" in completed.stderr
    assert completed.stderr.count("distributed:") == 1 and completed.stderr.count("epoch 1:") == 1


def initial_weights(run_folder):
    """The weights a run started from, built as the training task builds them: seeded, then the model."""
    from brnpa.runs.args import load_run_config
    from brnpa.runs.runtime import model_config, seed_everything
    from brnpa.models.net import build_model
    options, _ = load_run_config(run_folder / "e2e" / "br_npa_low_res.ini")
    seed_everything(options.seed)
    return build_model(model_config(options)).state_dict()


def test_two_processes_train_like_one(two_runs):
    """BatchNorm: with --sync_bn True, each layer normalises with the statistics of the global batch, as the
    one process does, and updates its running statistics with them; so, after the same step from the same
    weights, the parameters differ by rounding only (ROUNDING_TOLERANCE of the step) and the buffers agree."""
    _, root, _ = two_runs
    one = torch.load(root / "one" / "e2e" / "modelbr_npa_low_res_best.pth", weights_only=True)
    two = torch.load(root / "two" / "e2e" / "modelbr_npa_low_res_best.pth", weights_only=True)
    assert one["epoch"] == two["epoch"] == 1 and one["model"].keys() == two["model"].keys()
    start = initial_weights(root / "one")
    for name, tensor in one["model"].items():
        if not tensor.is_floating_point():
            assert torch.equal(tensor, two["model"][name]), name
        elif "running_" in name:  # the statistics of the global batch: rounding of a mean and a variance
            scale = tensor.abs().max().clamp_min(1e-8)
            assert (tensor - two["model"][name]).abs().max() / scale <= ROUNDING_TOLERANCE, name
        else:
            step = (tensor - start[name]).abs().max()
            assert step > 0, f"{name} did not move: the runs cannot be compared on it"
            assert (tensor - two["model"][name]).abs().max() / step <= ROUNDING_TOLERANCE, name


def test_two_processes_write_the_same_test_artifacts(two_runs):
    _, root, _ = two_runs
    for pattern in ("attMapsbr_npa_low_res_epoch*_test.npy", "normbr_npa_low_res_epoch*_test.npy"):
        one = np.load(glob.glob(str(root / "one" / "e2e" / pattern))[0]).astype(int)
        two = np.load(glob.glob(str(root / "two" / "e2e" / pattern))[0]).astype(int)
        assert one.shape == two.shape and np.abs(one - two).max() <= 1  # uint8 levels: rounding may differ by one
    rows = []
    for run in ("one", "two"):
        with open(glob.glob(str(root / run / "e2e" / "modelbr_npa_low_res_epoch*_test.csv"))[0]) as file:
            rows.append(next(csv.DictReader(file)))
    for key in ("accuracy", "loss", "sparsity"):
        assert float(rows[0][key]) == pytest.approx(float(rows[1][key]), rel=1e-4, abs=1e-6)


def test_curves_with_two_ranks_equal_one_rank(two_runs):
    common, root, _ = two_runs
    shutil.copytree(root / "two", root / "two_ranks")
    dauc = ["--attention_metrics", "Del", "--att_metrics_img_nb", "-1", "--att_metrics_batch_size", "5"]
    trainVal.main(common + ["--results_dir", str(root / "two")] + dauc)
    torchrun(2, common + ["--results_dir", str(root / "two_ranks")] + dauc)
    for name in ("attMetrDel_br_npa_low_res.npy", "attMetrDel_br_npa_low_res_preds.npy",
                 "attMetrDel_br_npa_low_res_imgInds.npy"):
        one, two = np.load(root / "two" / "e2e" / name), np.load(root / "two_ranks" / "e2e" / name)
        assert one.shape == two.shape and np.allclose(one, two, atol=1e-6), name
    assert np.load(root / "two" / "e2e" / "attMetrDel_br_npa_low_res.npy").shape[0] == 15


def test_search_with_two_processes_has_one_optuna_client(tiny_synth, tmp_path):
    """Rank 0 alone samples and records the trials (the other rank receives them): 1 trial, not 2."""
    import optuna
    config = tmp_path / "tiny.config"
    config.write_text(TINY_CONFIG + "max_batch_size = 8\n")
    results = tmp_path / "results"
    torchrun(2, ["-c", str(config), "--data_dir", tiny_synth, "--results_dir", str(results), "--model_id", "srch",
                 "--attention", "False", "--optuna", "True", "--optuna_trial_nb", "1", "--cuda", "False"])
    study = optuna.load_study(study_name="srch", storage=f"sqlite:///{results}/e2e/srch_hypSearch.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert len(glob.glob(str(results / "e2e" / "modelsrch_epoch*_test.csv"))) == 1


def processes_of(parent_pid):
    """{RANK: pid} of the processes torchrun started (read from /proc)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as file:
                parent = int(file.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/environ", "rb") as file:
                env = dict(item.split(b"=", 1) for item in file.read().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if parent == parent_pid and b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finding torchrun's processes needs /proc")
def test_a_dead_process_stops_the_other_with_one_line(tiny_synth, tmp_path):
    """SIGKILL rank 1 during training: rank 0 says in one line that another process stopped and that the same
    command resumes, instead of gloo's traceback (torchrun's own summary follows). torchrun looks at its processes
    every 10 s: at 3 s it sometimes saw rank 1 dead and stopped rank 0 before rank 0 had reached its next
    collective (about 1 run in 8 on a loaded 2-core machine)."""
    config = tmp_path / "tiny.config"
    config.write_text(TINY_CONFIG)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--monitor-interval",
         "10", os.path.join(REPO_ROOT, "trainVal.py"), "-c", str(config), "--data_dir", tiny_synth, "--results_dir",
         str(tmp_path / "results"), "--model_id", "cnn", "--head", "cnn", "--epochs", "30",
         "--max_worse_epoch_nb", "30", "--img_size", "64", "--cuda", "False"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = []
    for line in launcher.stderr:
        seen.append(line)
        if line.startswith("epoch 1:"):
            break
    assert seen and seen[-1].startswith("epoch 1:"), "".join(seen)[-3000:]
    os.kill(processes_of(launcher.pid)[1], signal.SIGKILL)
    rest = launcher.stderr.read()
    launcher.wait()
    errors = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert launcher.returncode != 0 and len(errors) == 1, rest[-3000:]
    assert "another process of this torchrun run stopped" in errors[0] and "run the same command again" in errors[0]
    assert "gloo" not in rest.split("ChildFailedError")[0].lower().replace(errors[0].lower(), "")
