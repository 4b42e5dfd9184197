"""The optuna search on a real PostgreSQL server: a throwaway server is started for these tests (initdb in
a temporary folder, pg_ctl on a free local port) and stopped after. Skipped, with the reason, only where
the PostgreSQL programs are not installed, and failed there under CI (.ci/run installs them)."""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
from optuna.trial import TrialState

from helpers import REPO_ROOT, skip_unless_ci


def postgres_bin():
    """Folder of initdb and pg_ctl: on the PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(found)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(versions[-1]) if versions else None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """URL of a throwaway PostgreSQL database, served for this module. initdb refuses root, so as root the
    server runs as the unprivileged user 'postgres' (or 'nobody')."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        skip_unless_ci("PostgreSQL is not installed (no initdb / pg_ctl): .ci/run installs it with apt")
    folder = tempfile.mkdtemp(prefix="brnpa_postgres_")
    prefix = []
    if os.geteuid() == 0:
        user = "postgres" if "postgres" in {entry.pw_name for entry in pwd.getpwall()} else "nobody"
        shutil.chown(folder, user)
        prefix = ["runuser", "-u", user, "--"]
    data, port = os.path.join(folder, "data"), free_port()

    def run(*command):
        completed = subprocess.run(prefix + list(command), capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr
    run(os.path.join(bin_dir, "initdb"), "-D", data, "-U", "brnpa", "--auth=trust")
    run(os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", os.path.join(folder, "log"), "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://brnpa@127.0.0.1:{port}/postgres"  # the database every new cluster has
    finally:
        run(os.path.join(bin_dir, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def config(search_config):
    return search_config


def worker(config, data_dir, results, url, study, trial_nb, *extra):
    return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "trainVal.py"), "-c", config, "--data_dir",
                             data_dir, "--results_dir", str(results), "--model_id", study, "--optuna", "True",
                             "--optuna_trial_nb", str(trial_nb), "--optuna_storage", url, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # two workers on two cores: no spinning


def test_postgres_two_workers_share_one_study(postgres_url, config, tiny_synth, tmp_path):
    optuna.create_study(storage=postgres_url, study_name="pair", direction="maximize")
    workers = [worker(config, tiny_synth, tmp_path / "results", postgres_url, "pair", 3) for _ in range(2)]
    for process in workers:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="pair", storage=postgres_url).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert glob.glob(str(tmp_path / "results" / "e2e" / "modelpair_epoch*_test.csv"))


def test_postgres_killed_worker_is_failed_by_the_heartbeat(postgres_url, config, tiny_synth, tmp_path):
    killed = worker(config, tiny_synth, tmp_path / "results", postgres_url, "killed", 3, "--epochs", "4")
    for line in killed.stderr:  # wait until the first trial is inside its training
        if line.startswith("epoch 1:"):
            break
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    study = optuna.load_study(study_name="killed", storage=postgres_url)
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
    time.sleep(2.5)  # past the grace period (twice the 1 s heartbeat)
    import trainVal  # the rerun, in this process (no start-up cost)
    trainVal.main(["-c", config, "--data_dir", tiny_synth, "--results_dir", str(tmp_path / "results"), "--model_id",
                   "killed", "--optuna", "True", "--optuna_trial_nb", "1", "--optuna_storage", postgres_url])
    states = [t.state for t in optuna.load_study(study_name="killed", storage=postgres_url).trials]
    assert states[0] == TrialState.FAIL and states.count(TrialState.COMPLETE) == 1
    assert TrialState.RUNNING not in states
