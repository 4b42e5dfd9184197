"""Hyper-parameter search: storage, resume, parallel workers, failures, sampled ranges, distillation."""
import os
import signal
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from brnpa.jobs import search
import trainVal
from brnpa.runs.args import parse_args, with_changes
from helpers import REPO_ROOT


@pytest.fixture
def config(search_config):
    return search_config


def search_argv(config, data_dir, results, trial_nb, model_id="srch", *extra):
    return ["-c", config, "--data_dir", data_dir, "--results_dir", str(results), "--model_id", model_id,
            "--optuna", "True", "--optuna_trial_nb", str(trial_nb), "--attention", "True", "--br_npa", "True",
            "--optuna_pruner", "none", *extra]


def load_study(results, model_id="srch"):
    return optuna.load_study(study_name=model_id,
                             storage=f"sqlite:///{results}/e2e/{model_id}_hypSearch.db")


def states(study):
    return [t.state for t in study.get_trials()]


def test_search_writes_db_and_artifacts_and_resumes(config, tiny_synth, tmp_path):
    results = tmp_path / "results"
    trainVal.main(search_argv(config, tiny_synth, results, 2))
    study = load_study(results)
    assert states(study) == [TrialState.COMPLETE] * 2
    folder = results / "e2e"
    assert len(list(folder.glob("modelsrch_epoch*_test.csv"))) == 1
    assert len(list(folder.glob("attMapssrch_epoch*_test.npy"))) == 1
    assert (folder / "srch_best_params.json").exists() and (folder / "modelsrch_best.pth").exists()
    # only the best trial's checkpoint is kept
    best = max(study.trials, key=lambda t: t.value).number
    assert sorted(p.name for p in folder.glob("modelsrch_trial*_best.pth")) == [f"modelsrch_trial{best}_best.pth"]
    before = [(t.number, t.params, t.value) for t in study.trials]
    trainVal.main(search_argv(config, tiny_synth, results, 3))
    after = load_study(results).trials
    assert states(load_study(results)) == [TrialState.COMPLETE] * 3
    # the earlier trials are kept as they were, and exactly the missing one ran
    assert [(t.number, t.params, t.value) for t in after[:2]] == before and after[2].number == 2
    assert len(list(folder.glob("modelsrch_epoch*_test.csv"))) == 1


def test_nan_trial_is_failed_and_study_goes_on(config, tiny_synth, tmp_path, monkeypatch):
    real_train = search.train_model
    calls = []

    def first_trial_diverges(config, samples, *rest):
        calls.append(1)
        if len(calls) == 1:
            config = with_changes(config, lr=float("inf"))  # weights become NaN, so does the loss
        return real_train(config, samples, *rest)

    monkeypatch.setattr(search, "train_model", first_trial_diverges)
    results = tmp_path / "results"
    trainVal.main(search_argv(config, tiny_synth, results, 1))
    trials = load_study(results).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "FloatingPointError" in trials[0].user_attrs["fail_reason"]


def test_search_stops_when_every_trial_fails(config, tiny_synth, tmp_path, monkeypatch):
    def always_fails(*args, **kwargs):
        raise ValueError("bad parameter combination")

    monkeypatch.setattr(search, "train_model", always_fails)
    results = tmp_path / "results"
    with pytest.raises(SystemExit, match="3 trials failed in a row.*bad parameter combination"):
        trainVal.main(search_argv(config, tiny_synth, results, 2))
    assert states(load_study(results)) == [TrialState.FAIL] * 3


def run_worker(config, data_dir, results, trial_nb, *extra):
    return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "trainVal.py"),
                             *search_argv(config, data_dir, results, trial_nb, "srch", *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # two workers on two cores: no spinning


def test_killed_search_resumes(config, tiny_synth, tmp_path, capsys, monkeypatch):
    """A worker killed inside its first trial: the rerun says it waits for that trial, the heartbeat marks it
    failed, and the study completes its trials."""
    results = tmp_path / "results"
    worker = run_worker(config, tiny_synth, results, 2, "--epochs", "4")
    for line in worker.stderr:  # wait until the first trial is inside its training
        if line.startswith("epoch 1:"):
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    study = load_study(results)
    assert states(study) == [TrialState.RUNNING]
    capsys.readouterr()
    real_fail_stale_trials = optuna.storages.fail_stale_trials
    checks_after_a_complete_trial = []

    def within_the_grace_period_until_the_rerun_waits(study):
        """The dead trial stays within its grace period (2 s) until the rerun has completed a trial of its own
        and looked at the study once more, however long that takes on a loaded machine: the rerun then holds
        as many trials as it needs, one of them the dead one, and must say it waits. Every later check
        (brnpa/jobs/search.py's and optuna's own before each trial) is optuna's."""
        if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            checks_after_a_complete_trial.append(1)
        if len(checks_after_a_complete_trial) > 1:
            real_fail_stale_trials(study)
    monkeypatch.setattr(optuna.storages, "fail_stale_trials", within_the_grace_period_until_the_rerun_waits)
    trainVal.main(search_argv(config, tiny_synth, results, 2))
    assert len(checks_after_a_complete_trial) > 1  # the dead trial was failed by optuna's own check
    assert "[optuna] waiting for 1 running trial(s)" in capsys.readouterr().err  # not a silent wait
    study = load_study(results)
    assert states(study)[0] == TrialState.FAIL
    assert states(study).count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states(study)


def test_two_workers_share_one_study(config, tiny_synth, tmp_path):
    results = tmp_path / "results"
    os.makedirs(results / "e2e")
    optuna.create_study(storage=f"sqlite:///{results}/e2e/srch_hypSearch.db", study_name="srch",
                        direction="maximize")  # created once, so the two workers do not race on the schema
    workers = [run_worker(config, tiny_synth, results, 3) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    trials = load_study(results).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


@pytest.mark.parametrize("optim_aug_teacher", [(True, False), (False, True)])
def test_sampled_parameters_stay_in_spec_ranges(optim_aug_teacher):
    opt_data_aug, master_net = optim_aug_teacher
    args = parse_args(["--max_batch_size", "32", "--opt_data_aug", str(opt_data_aug),
                       "--master_net", str(master_net), "--m_model_id", "teacher"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen_optims = set()
    for _ in range(300):
        trial = study.ask()
        hparams = vars(search.trial_config(trial, args))
        study.tell(trial, 0.5)
        assert 1e-4 <= hparams["lr"] <= 1e-2 and 1e-6 <= hparams["weight_decay"] <= 1e-3
        assert 12 <= hparams["batch_size"] <= 32 and hparams["dropout"] in (0, .2, .4, .6)
        seen_optims.add(hparams["optim"])
        if hparams["optim"] == "SGD":
            assert round(hparams["momentum"] * 10, 6) in range(10)
            assert {"momentum", "use_scheduler"} <= set(trial.params)
        else:
            assert "momentum" not in trial.params and "use_scheduler" not in trial.params
        if opt_data_aug:
            assert 0 <= hparams["brightness"] <= 0.5 and round(hparams["brightness"] * 20, 6) % 1 == 0
            assert 0 <= hparams["saturation"] <= 0.9 and 0.8 <= hparams["crop_ratio"] <= 1.0
        else:
            assert "brightness" not in trial.params
        if master_net:
            assert hparams["kl_temp"] in (1, 6, 11, 16, 21) and 0.1 <= hparams["kl_interp"] <= 1.0
        else:
            assert "kl_temp" not in trial.params
    assert seen_optims == {"SGD", "Adam", "AMSGrad"}


def test_distillation_needs_the_teacher(tiny_synth, tmp_path, config):
    """What ./train.sh br_npa_high_res_distill runs (in this process) without a trained teacher."""
    from brnpa.core.model_ids import model_options
    with pytest.raises(SystemExit) as exit_:
        trainVal.main(["-c", config, "--model_id", "br_npa_high_res_distill",
                       *model_options("br_npa_high_res_distill"), "--data_dir", tiny_synth,
                       "--results_dir", str(tmp_path / "r")])
    err = str(exit_.value.code)  # the one line the user sees
    assert "teacher model 'br_npa_low_res' is not ready" in err
    assert f"CONFIG={config} ./train.sh br_npa_low_res" in err
    assert not (tmp_path / "r" / "e2e" / "br_npa_high_res_distill.ini").exists()
