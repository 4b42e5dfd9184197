"""Two search workers on one study: which trial checkpoints a worker may delete, and which best trial it
tests. The other worker's step is injected between two reads of the study (no sleep, no second process)."""
import argparse
import os

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from brnpa.runs import results_io
from brnpa.jobs import search
from brnpa.core.errors import SearchError


@pytest.fixture
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize")  # in memory: the same API as a shared database


@pytest.fixture
def args(tmp_path):
    (tmp_path / "exp").mkdir()
    return argparse.Namespace(results_dir=str(tmp_path), exp_id="exp", model_id="srch")


def checkpoint(args, number):
    return results_io.checkpoint_path(results_io.exp_dir(args.results_dir, args.exp_id), args.model_id, number)


def write_checkpoint(args, number):
    with open(checkpoint(args, number), "wb") as file:
        file.write(f"weights of trial {number}".encode())


def exists(args, number):
    return os.path.exists(checkpoint(args, number))


def after_first_read(study, other_worker_step):
    """Make the study run other_worker_step() right after this worker's next read of its trials, as a
    second worker sharing the storage may at any moment."""
    real_get_trials = study.get_trials
    reads = []

    def get_trials(*a, **kw):
        trials = real_get_trials(*a, **kw)
        reads.append(1)
        if len(reads) == 1:
            other_worker_step()
        return trials
    study.get_trials = get_trials
    return reads


def test_a_better_trial_completed_between_reads_keeps_its_weights(study, args):
    study.tell(study.ask(), 0.5)
    running = study.ask()  # another worker's trial, training
    write_checkpoint(args, 0)
    write_checkpoint(args, 1)
    after_first_read(study, lambda: study.tell(running, 0.9))  # it completes, as the new best
    search.keep_best_checkpoint(study, args)
    assert exists(args, 1), "the new best trial's weights were deleted"
    assert exists(args, 0)  # trial 0 was the best of the read this worker decided from
    del study.get_trials  # the worker's reads are plain again
    search.keep_best_checkpoint(study, args)  # the next decision sees trial 1 as the best
    assert exists(args, 1) and not exists(args, 0)


def trial(number, state, value=None):
    made = create_trial(state=state, value=value, params={"lr": 0.01},
                        distributions={"lr": FloatDistribution(1e-4, 1e-2)})
    made.number = number
    return made


def test_surplus_checkpoints_of_one_read():
    trials = [trial(0, TrialState.COMPLETE, 0.5), trial(1, TrialState.PRUNED), trial(2, TrialState.COMPLETE, 0.8),
              trial(3, TrialState.RUNNING), trial(4, TrialState.FAIL), trial(5, TrialState.COMPLETE, 0.8),
              trial(6, TrialState.WAITING)]
    # best: 2 (0.8, ties go to the lower number); running and waiting trials are never touched
    assert search.surplus_checkpoints(trials) == [0, 1, 4, 5]
    assert search.surplus_checkpoints([trial(0, TrialState.RUNNING), trial(1, TrialState.FAIL)]) == [1]


def test_the_final_test_takes_the_new_best_when_the_old_one_was_deleted(study, args):
    study.tell(study.ask(), 0.5)
    running = study.ask()
    write_checkpoint(args, 0)
    write_checkpoint(args, 1)

    def other_worker_finishes_a_better_trial():
        study.tell(running, 0.9)
        search.keep_best_checkpoint(study, args)  # from its own read: trial 0's weights go

    reads = after_first_read(study, other_worker_finishes_a_better_trial)
    best, data = search.best_trial_checkpoint(study, results_io.exp_dir(args.results_dir, args.exp_id),
                                              args.model_id)
    assert best.number == 1 and data == b"weights of trial 1"
    assert len(reads) >= 2  # trial 0 was read as the best first, then the study again


def test_the_best_checkpoint_deleted_by_hand_is_an_error(study, args):
    study.tell(study.ask(), 0.5)
    with pytest.raises(SearchError, match=r"modelsrch_trial0_best\.pth is missing; the best trial's weights"):
        search.best_trial_checkpoint(study, results_io.exp_dir(args.results_dir, args.exp_id), args.model_id)
