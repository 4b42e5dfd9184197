"""Hyper-parameter search with optuna (docs/METHOD.md, "Search"): resumable, several workers per study.

Workers started with the same command share the study in --optuna_storage
(default: SQLite <results>/<exp_id>/<model_id>_hypSearch.db, study name =
model_id). Each worker runs trials until the study holds --optuna_trial_nb
finished (complete or pruned) trials; failed trials do not count. With a
database storage, a trial left running by a dead worker is marked failed by
optuna's heartbeat. After the study, the best trial's best checkpoint is
tested and written under the names of a run without search.
"""
import os
import sys
import time
import warnings

import optuna
import torch
from optuna.trial import TrialState

from brnpa.core import files
from brnpa.core import distributed
from brnpa.runs import results_io
from brnpa.runs import lifecycle
from brnpa.runs.args import OPTIONS, PRUNERS, SEARCHABLE, run_signature, with_changes, write_config
from brnpa.runs.checkpoints import Checkpoints, read_checkpoint
from brnpa.core.errors import SearchError
from brnpa.runs.runtime import get_device
from brnpa.jobs.train_task import load_teacher
from brnpa.jobs.training import checkpoint_bytes, test_model, train_model

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# optuna flags its heartbeat as experimental; it is what resumes a study after a crash, so it is used on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Errors that fail one trial while the study goes on (NaN loss, out of memory, bad combination).
TRIAL_ERRORS = (FloatingPointError, RuntimeError, ValueError, torch.OutOfMemoryError)
# A worker stops after this many failed trials in a row, so a bug cannot make it loop for ever.
MAX_FAILURES_IN_A_ROW = 3


class SurplusTrial(Exception):
    """Raised when other workers already hold enough trials: this one is failed without training."""


def trial_config(trial, config):
    """The configuration of one trial: the run's, with every searched option of the option table (brnpa/runs/args.py,
    each with its SearchSpace) sampled in the table's order, those whose `when` says so for this trial; with
    --always_sched, the scheduler on in every trial (as the released search set it after sampling)."""
    sampled = {}
    for name in SEARCHABLE:
        space = OPTIONS[name].search
        if space.when is None or space.when(config, sampled):
            sampled[name] = suggest(trial, name, space, config)
    if config.always_sched:
        sampled["use_scheduler"] = True
    return with_changes(config, **sampled)


def suggest(trial, name, space, config):
    """One value of an option drawn from its SearchSpace by an optuna trial."""
    if space.kind == "categorical":
        return trial.suggest_categorical(name, list(space.choices))
    low, high = space.bounds(config)
    if space.kind == "float":
        return trial.suggest_float(name, low, high, step=space.step, log=space.log)
    if space.kind == "int":
        return trial.suggest_int(name, low, high, log=space.log)
    raise ValueError(f"search space of '{name}': kind must be float, int or categorical, got '{space.kind}'")


# --optuna_storage journal:PATH: an optuna journal file instead of a database.
JOURNAL_PREFIX = "journal:"


def make_pruner(name):
    """The pruner of --optuna_pruner: none (every trial runs to its end, as the authors') or median."""
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"optuna_pruner must be one of {', '.join(PRUNERS)}, got '{name}'")


def make_storage(args):
    """optuna storage from --optuna_storage: a database URL (heartbeat on), or journal:PATH (no heartbeat)."""
    url = args.optuna_storage
    if url is None:
        url = "sqlite:///" + results_io.study_path(results_io.exp_dir(args.results_dir, args.exp_id), args.model_id)
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX):]))
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=args.optuna_heartbeat,
                                      grace_period=2 * args.optuna_heartbeat)


def read_trials(study):
    """One read of the study's trials (FrozenTrial list). Every decision about the trials (how many are
    finished, which is the best, which checkpoints can go) is taken from a single read: another worker may
    complete a trial between two reads, and two reads would then disagree."""
    return study.get_trials(deepcopy=False)


def count_trials(trials, states, below=None):
    """How many of trials (one read_trials) are in states, counting only numbers below `below` if given."""
    return sum(1 for t in trials if t.state in states and (below is None or t.number < below))


def has_heartbeat(args):
    """Database storages run a heartbeat; journal files do not (optuna has none for them)."""
    return not (args.optuna_storage or "").startswith(JOURNAL_PREFIX)


def make_objective(args, samples, teacher):
    exp_folder = results_io.exp_dir(args.results_dir, args.exp_id)

    def objective(trial):
        # States that still count toward the total: with a heartbeat, running trials of other workers too.
        counted = FINISHED + ((TrialState.RUNNING,) if has_heartbeat(args) else ())
        if count_trials(read_trials(trial.study), counted, below=trial.number) >= args.optuna_trial_nb:
            raise SurplusTrial(f"the study already holds {args.optuna_trial_nb} trials")
        config = trial_config(trial, args)
        checkpoint_file = results_io.checkpoint_path(exp_folder, args.model_id, trial.number)

        def report(epoch, val_accuracy):
            trial.report(val_accuracy, epoch)
            if distributed.broadcast(trial.should_prune()):  # the other processes stop the trial too
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        metrics_file = results_io.epoch_metrics_path(exp_folder, args.model_id, trial.number)
        run_id = lifecycle.new_run_id()
        distributed.broadcast({"do": "trial", "config": config, "checkpoint": checkpoint_file,
                               "metrics": metrics_file, "run_id": run_id})
        try:
            best_accuracy, best_epoch = train_model(config, samples, Checkpoints(checkpoint_file, None, run_id),
                                                    metrics_file, report, teacher)
        except TRIAL_ERRORS as error:
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}")
            remove_file(checkpoint_file)
            raise
        except optuna.TrialPruned:
            remove_file(checkpoint_file)
            raise
        trial.set_user_attr("best_epoch", best_epoch)
        return best_accuracy

    return objective


def remove_file(path):
    if os.path.exists(path):
        os.remove(path)


def keep_best_checkpoint(study, args):
    """Delete the checkpoints that can never be the best's (surplus_checkpoints), from one read of the study."""
    exp_folder = results_io.exp_dir(args.results_dir, args.exp_id)
    for number in surplus_checkpoints(read_trials(study)):
        remove_file(results_io.checkpoint_path(exp_folder, args.model_id, number))


def surplus_checkpoints(trials):
    """Numbers of the trials whose checkpoint can go, from one read of the study (trials): the finished ones
    (complete, pruned, failed) other than the best complete one. Such a trial can never become the best: the
    best value of a study only grows, and a trial's state does not change once finished. A trial still running
    in this read is left alone, whatever other workers do meanwhile: it may complete as the new best."""
    best = best_trial(trials)
    return [t.number for t in trials if t.state.is_finished() and (best is None or t.number != best.number)]


def best_trial(trials):
    """The best complete trial of one read of the study (highest value, then lowest number), or None."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def print_trial(study, trial):
    """One line on stderr per trial: number, state, value, parameters, best so far."""
    best = best_trial(read_trials(study))
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    reason = f" ({trial.user_attrs['fail_reason']})" if "fail_reason" in trial.user_attrs else ""
    best_text = "none yet" if best is None else f"trial {best.number} ({best.value:.4f})"
    print(f"[optuna] trial {trial.number} {trial.state.name.lower()}{reason}: value {value}, "
          f"params {trial.params} | best so far: {best_text}", file=sys.stderr)


def follow_search(args, samples, teacher):
    """The search seen from a process other than rank 0 (torchrun): train the trials and run the test
    that rank 0 sends, until it says stop."""
    def report(epoch, val_accuracy):
        if distributed.broadcast():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    while True:
        order = distributed.broadcast()
        if order["do"] == "stop":
            return
        if order["do"] == "trial":
            try:  # rank 0 sees the same failure (the metrics are reduced over the processes) and records it
                train_model(order["config"], samples, Checkpoints(order["checkpoint"], None, order["run_id"]),
                            order["metrics"], report, teacher)
            except TRIAL_ERRORS + (optuna.TrialPruned,):
                pass
        elif order["do"] == "test":
            test_model(order["config"], samples, order["checkpoint_file"], order["run_id"], order["reference"],
                       order["remake"])


def run_search(args, samples):
    """Run trials until the study holds --optuna_trial_nb finished ones, then test the best trial.
    With several processes, rank 0 runs the study and the others follow it."""
    exp_folder = results_io.exp_dir(args.results_dir, args.exp_id)
    teacher = load_teacher(args, get_device(args.cuda)) if args.master_net else None
    if not distributed.is_main():
        follow_search(args, samples, teacher)
        return
    lifecycle.check_results_folder(exp_folder, checkpoint_bytes(args))
    pruner = make_pruner(args.optuna_pruner)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=make_storage(args), study_name=args.model_id, direction="maximize",
                                pruner=pruner, load_if_exists=True)
    objective = make_objective(args, samples, teacher)
    failures_in_a_row = []  # this worker's trials that failed in a row (not counting surplus ones)

    def track_failures(study, trial):
        if trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs:
            failures_in_a_row.append(trial.user_attrs["fail_reason"])
        elif trial.state != TrialState.FAIL:
            failures_in_a_row.clear()

    said_waiting = False
    while True:
        if has_heartbeat(args):
            optuna.storages.fail_stale_trials(study)
        trials = read_trials(study)  # the counts below come from this one read
        if count_trials(trials, FINISHED) >= args.optuna_trial_nb:
            break
        if len(failures_in_a_row) >= MAX_FAILURES_IN_A_ROW:
            raise SearchError(f"{MAX_FAILURES_IN_A_ROW} trials failed in a row, the last with "
                              f"'{failures_in_a_row[-1]}': fix the cause, then rerun to resume the study")
        if has_heartbeat(args):
            running = count_trials(trials, (TrialState.RUNNING,))
            if count_trials(trials, FINISHED) + running >= args.optuna_trial_nb:
                if not said_waiting:
                    print(f"[optuna] waiting for {running} running trial(s) of study '{args.model_id}': trials of "
                          f"other workers, or of a killed run, which optuna marks failed once silent for "
                          f"{2 * args.optuna_heartbeat} s (--optuna_heartbeat {args.optuna_heartbeat})",
                          file=sys.stderr)
                    said_waiting = True
                time.sleep(min(args.optuna_heartbeat, 5))  # other workers are running the last trials
                continue
            said_waiting = False
        study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS + (SurplusTrial,),
                       callbacks=[print_trial, track_failures])
        keep_best_checkpoint(study, args)
    finish_search(args, samples, study)
    distributed.broadcast({"do": "stop"})


def best_trial_checkpoint(study, exp_folder, model_id):
    """(best complete trial, the bytes of its checkpoint file), read together. A worker deletes a trial's
    checkpoint only when its own read of the study holds a better trial (surplus_checkpoints), so a best
    trial whose file is gone has been overtaken: the study is read again and the new best taken. The same
    best with its file gone is an error (someone deleted it by hand)."""
    previous = None
    while True:
        best = best_trial(read_trials(study))
        if best is None:
            raise SearchError(f"no trial of study '{model_id}' completed: see the [optuna] lines above")
        path = results_io.checkpoint_path(exp_folder, model_id, best.number)
        try:
            with open(path, "rb") as file:  # once open, the bytes stay readable even if the file is deleted
                return best, file.read()
        except FileNotFoundError:
            if previous == best.number:
                raise SearchError(f"checkpoint {path} is missing; the best trial's weights are gone: delete trial "
                                  f"{best.number} from the study, or start a new study") from None
            previous = best.number


def finish_search(args, samples, study):
    """Test the best trial's checkpoint and land it, with its per-epoch metrics, resolved config and
    parameters, as the model's files (lifecycle.Stage). Workers finishing together take turns; the best
    trial already landed with the same options is not tested again (unless --overwrite)."""
    exp_folder = results_io.exp_dir(args.results_dir, args.exp_id)
    model_id = args.model_id
    best, checkpoint_data = best_trial_checkpoint(study, exp_folder, model_id)
    checkpoint = read_checkpoint(results_io.checkpoint_path(exp_folder, model_id, best.number), data=checkpoint_data)
    best_config = with_changes(args, **checkpoint["searched"])
    stage = lifecycle.model_stage(exp_folder, model_id)
    with stage.opened(wait_seconds=3600):
        try:
            landed = lifecycle.LandedRun(exp_folder, model_id, args)
        except lifecycle.NotTrainedError:
            landed = None
        done_signature = None
        if landed is not None and landed.metadata.get("search_trial") == str(best.number):
            done_signature = run_signature(landed.args)
        if lifecycle.plan(done_signature, run_signature(best_config), None, args.overwrite, False) == "done":
            print(f"best trial {best.number} is already tested (run {landed.run_id}): {landed.paths['csv']}")
            return
        stage.fresh()
        checkpoint_file = results_io.checkpoint_path(stage.folder, model_id)
        files.atomic_write_bytes(checkpoint_file, checkpoint_data)  # the bytes tested are the bytes landed
        with open(results_io.epoch_metrics_path(exp_folder, model_id, best.number), "rb") as file:
            files.atomic_write_bytes(results_io.epoch_metrics_path(stage.folder, model_id), file.read())
        staged_config = results_io.config_path(stage.folder, model_id)
        write_config(best_config, staged_config, run_id=checkpoint["run_id"], search_trial=best.number)
        files.atomic_write_json(results_io.best_params_path(stage.folder, model_id),
                                     {"trial": best.number, "val_accuracy": best.value, "params": best.params,
                                      "searched": checkpoint["searched"]})
        test_order = {"config": best_config, "checkpoint_file": checkpoint_file, "run_id": checkpoint["run_id"],
                      "reference": staged_config, "remake": lifecycle.train_command(args, model_id, "--overwrite True")}
        distributed.broadcast({"do": "test", **test_order})
        test_values, att_maps, norms, header = test_model(samples=samples, **test_order)
        results_io.write_test_artifacts(stage.folder, model_id, test_values["epoch"], test_values, header, att_maps,
                                        norms, checkpoint["run_id"])
        stage.land()
    print(f"best trial {best.number}: validation accuracy {best.value:.4f}; test accuracy "
          f"{test_values['accuracy']:.4f}, sparsity {test_values['sparsity']:.4f} (epoch {test_values['epoch']})")
