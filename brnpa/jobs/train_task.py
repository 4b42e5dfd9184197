"""The plain training task (--optuna False): train one model with the configured hyper-parameters in its
staging folder, test it, and land its files as the model's (lifecycle.Stage). A rerun of the same command
resumes an interrupted run, and does nothing when the model already has a finished run with the same
options (unless --overwrite True)."""
import os
import sys

from brnpa.core import distributed
from brnpa.runs import results_io
from brnpa.runs import lifecycle
from brnpa.runs.args import load_run_config, run_differences, run_signature, write_config
from brnpa.runs.checkpoints import Checkpoints
from brnpa.core.errors import UserError
from brnpa.runs.runtime import get_device, memory_format, prepare_model
from brnpa.jobs.training import checkpoint_bytes, test_model, train_model


def load_teacher(config, device):
    """The frozen teacher --m_model_id: its finished run, rebuilt from its resolved config and best
    checkpoint, which must carry one run id."""
    exp_folder = results_io.exp_dir(config.results_dir, config.exp_id)
    try:
        teacher, _ = lifecycle.LandedRun(exp_folder, config.m_model_id, config).load_model()
    except UserError as error:
        raise type(error)(f"teacher model '{config.m_model_id}' is not ready: {error}") from None
    teacher = prepare_model(teacher, device, memory_format(config.channels_last, device)).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def plan_plain_run(stage, config):
    """Rank 0's decision before a plain run (under the model's lock): {'plan': 'done' | 'resume' | 'fresh',
    'run_id', 'csv' (done only)}. A fresh run gets a new run id and an empty staging folder holding its
    resolved options."""
    model_id = config.model_id
    try:
        landed = lifecycle.LandedRun(stage.exp_folder, model_id, config)
    except lifecycle.NotTrainedError:
        landed = None
    done_signature = run_signature(landed.args) if landed is not None and "search_trial" not in landed.metadata \
        else None
    staged_config = results_io.config_path(stage.folder, model_id)
    staged_signature, staged = None, None
    if os.path.exists(results_io.last_checkpoint_path(stage.folder, model_id)) and os.path.exists(staged_config):
        staged = load_run_config(staged_config)
        staged_signature = run_signature(staged[0])
    decision = lifecycle.plan(done_signature, run_signature(config), staged_signature, config.overwrite, config.resume)
    if decision == "done":
        return {"plan": "done", "run_id": landed.run_id, "csv": landed.paths["csv"]}
    if decision == "resume":
        return {"plan": "resume", "run_id": staged[1]["run_id"]}  # train_model says from which epoch
    if landed is not None:
        say_removed_sets(stage, landed, config)
    if staged is not None:
        differences = run_differences(staged[0], config)
        reason = "--resume False" if not differences else f"other values of {', '.join(differences)}"
        print(f"starting '{model_id}' over: the unfinished run in {stage.folder} is discarded ({reason})",
              file=sys.stderr)
    stage.fresh()
    run_id = lifecycle.new_run_id()
    write_config(config, staged_config, run_id=run_id)
    return {"plan": "fresh", "run_id": run_id}


def say_removed_sets(stage, landed, config):
    """The line saying that a model trained again loses, when the new run lands, the sets of scores computed from
    its landed run (they would not describe the new model)."""
    sets = sorted(os.path.basename(path)[:-len(".json")] for path in stage.owned()
                  if os.path.basename(path).startswith("attMetr") and path.endswith(".json"))
    if sets:
        differences = run_differences(landed.args, config)
        reason = f"other values of {', '.join(differences)}" if differences else "--overwrite True"
        print(f"'{config.model_id}' is trained again ({reason}): its {len(sets)} sets of scores computed from run "
              f"{landed.run_id} ({', '.join(sets)}) are removed when the new run lands", file=sys.stderr)


def train_and_test(config, samples):
    """A plain run: see the module docstring. With several processes, rank 0 holds the lock and decides;
    all of them train and test."""
    exp_folder = results_io.exp_dir(config.results_dir, config.exp_id)
    teacher = load_teacher(config, get_device(config.cuda)) if config.master_net else None
    if distributed.is_main():
        lifecycle.check_results_folder(exp_folder, checkpoint_bytes(config))
    stage = lifecycle.model_stage(exp_folder, config.model_id)
    model_id = config.model_id
    with distributed.main_only(stage.opened()):
        decision = distributed.broadcast(plan_plain_run(stage, config) if distributed.is_main() else None)
        if decision["plan"] == "done":
            if distributed.is_main():
                print(f"'{model_id}' already has a finished run with these options (run {decision['run_id']}): "
                      f"{decision['csv']}. --overwrite True trains it again.")
            return
        run_id = decision["run_id"]
        checkpoints = Checkpoints(results_io.checkpoint_path(stage.folder, model_id),
                                  results_io.last_checkpoint_path(stage.folder, model_id), run_id)
        best_accuracy, best_epoch = train_model(config, samples, checkpoints,
                                                results_io.epoch_metrics_path(stage.folder, model_id),
                                                teacher=teacher, resume=decision["plan"] == "resume")
        test_values, att_maps, norms, header = test_model(
            config, samples, checkpoints.best_path, run_id, results_io.config_path(stage.folder, model_id),
            lifecycle.train_command(config, model_id, "--resume False"))
        if distributed.is_main():
            results_io.write_test_artifacts(stage.folder, model_id, test_values["epoch"], test_values, header,
                                            att_maps, norms, run_id)
            stage.land(keep=(os.path.basename(checkpoints.last_path),))
            print(f"best validation accuracy {best_accuracy:.4f} at epoch {best_epoch}")
            print(f"test accuracy {test_values['accuracy']:.4f}, sparsity {test_values['sparsity']:.4f} "
                  f"-> {results_io.test_paths(exp_folder, model_id, best_epoch)['csv']}")
