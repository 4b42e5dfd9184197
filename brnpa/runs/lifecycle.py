"""One run, one identity: run ids, the staged-run mechanism every task uses, the locks that keep two
processes off one set of files, and reading a finished run back.

A training run gets a run id (12 hex digits) when it starts, and every file it writes carries it: the
resolved .ini (`run_id = ...`), the checkpoints, the test CSV (a run_id column) and the metadata of
every curve set computed from it. Each task works through a Stage (see its docstring):

- a plain training run (brnpa/jobs/train_task.py) and the search's final test (brnpa/jobs/search.py) stage the
  model's files in <exp_folder>/.<model_id>.staging/ and land them, test CSV last;
- the curve task (brnpa/jobs/attention_metrics.py) stages the files of one set (the task's arrays, _imgInds,
  _preds, _targets and the .json: 7 for a curve set) in
  <exp_folder>/.attMetr<metric>_<source>.staging/ and lands them, the .json last.

Stage.opened() takes the set's lock and finishes a landing a crash interrupted; plan() decides whether
the run is already done, resumes, or starts fresh. Readers check run ids with check_same_run, and a
finished model is read back (and its model loaded) through LandedRun.
"""
import contextlib
import csv
import dataclasses
import fcntl
import functools
import json
import os
import shlex
import shutil
import socket
import sys
import time
import uuid
from typing import Callable

from brnpa.core import files
from brnpa.runs import results_io
from brnpa.runs.args import (NOT_RUN_DEFINING, RUN_METADATA, SEARCHABLE, build_parser, load_run_config,
                             read_config_file, resolve_derived, with_changes)
from brnpa.runs.checkpoints import load_weights, read_checkpoint
from brnpa.core.errors import DiskFullError, LockedError, NotTrainedError, UserError
from brnpa.core.options import resolve_path

LANDING = "LANDING"
# The config file of the shell scripts unless CONFIG names another (model_ids.sh).
SCRIPTS_CONFIG = "config_cub.config"


def new_run_id():
    return uuid.uuid4().hex[:12]


def train_command(options, model_id, *extra, script="train.sh", config=None, search_trial=False):
    """The command that (re)makes a model's files (script train.sh) or curves (a perturbation task's script_call,
    'get_dauc_scores.sh' or 'get_scores.sh ROADMoRF'), with
    the options that make it reproduce `options` (a run's resolved options, or the command at hand; None:
    none): CONFIG= when the config file is not the scripts' default, every run-defining option whose value
    differs from what the config file and the model-id table give (for the curve scripts: the experiment),
    and the paths. A model id outside the table gets the trainVal.py command instead of the script.
    search_trial: the run is a search's best trial, so the searched values are the search's, not options."""
    from brnpa.metrics.tasks import TASKS
    from brnpa.core.model_ids import MODEL_IDS, model_options
    config = getattr(options, "config", None) or config
    metric_keys = [key for key, task in TASKS.items() if task.script_call == script]
    if model_id in MODEL_IDS:
        prefix = f"CONFIG={config} " if config and os.path.basename(config) != SCRIPTS_CONFIG else ""
        words = [f"{prefix}./{script} {model_id}"]
        table = model_options(model_id)
    else:
        words = [f"python3 trainVal.py -c {config or SCRIPTS_CONFIG} --model_id {model_id}"]
        words += [f"--attention_metrics {metric_keys[0]}"] if metric_keys else []
        table = []
    if options is not None:
        words += differing_options(options, model_id, config, table, curves=bool(metric_keys),
                                   search_trial=search_trial)
    return " ".join(words + list(extra))


def differing_options(options, model_id, config, table, curves=False, search_trial=False):
    """['--name value', ...] for the options whose value in `options` differs from the one that
    `-c config --model_id model_id <table>` resolves to: the run-defining ones (the experiment alone for
    curves; not the searched ones for a search's best trial) and the paths."""
    parser = build_parser()
    try:
        parser.set_defaults(**read_config_file(resolve_path(config or SCRIPTS_CONFIG), parser))
    except (OSError, ValueError):
        pass  # the config file is gone or changed: the hint then states every option that differs from the defaults
    baseline = resolve_derived(parser.parse_args(["--model_id", model_id, *table]))
    names = ["exp_id"] if curves else sorted(set(vars(baseline)) - NOT_RUN_DEFINING - set(RUN_METADATA)
                                             - {"model_id"} - (set(SEARCHABLE) if search_trial else set()))
    words = []
    for name in names + ["data_dir", "results_dir"]:
        value, default = getattr(options, name, None), getattr(baseline, name, None)
        if name in ("data_dir", "results_dir") and value is not None:
            value, default = resolve_path(value), resolve_path(default)
        if name in vars(options) and value != default:
            words.append(f"--{name} {shlex.quote(str(value))}")
    return words


def check_same_run(what, found_run_id, expected_run_id, reference, remake):
    """NotTrainedError unless `what` (a file) carries the run id of `reference` (the file that says which
    run is the model's): the one message for files of different runs, with the command that remakes them."""
    if found_run_id != expected_run_id:
        raise NotTrainedError(f"{what} (run {found_run_id}) and {reference} (run {expected_run_id}) come from "
                              f"different runs: remake it with {remake}")


@dataclasses.dataclass
class Stage:
    """A set of result files that land together in exp_folder. A run writes them into the staging folder
    <exp_folder>/.<name>.staging/, then land() replaces the set's old files by them:

    1. a LANDING file listing the staged names is written in the staging folder;
    2. the old marker files go first (a marker is the file that says "this set is complete": a model's
       test CSV, a curve set's .json), then the set's other old files;
    3. the staged files are moved in, markers last, the folder's entries are flushed to the disk, and the
       staging folder is removed.

    A crash anywhere leaves the old set (before 1), a set without marker that the next run finishes landing
    (1 to 3), or the new set: never a mix that a reader accepts. owned() lists the set's existing files
    in exp_folder; is_marker(name) tells a marker. The set's lock is <exp_folder>/<name>.lock.
    """
    exp_folder: str
    name: str
    owned: Callable[[], list]
    is_marker: Callable[[str], bool]

    @property
    def folder(self):
        return results_io.staging_path(self.exp_folder, self.name)

    def interrupted(self):
        """Whether a landing was started and did not finish."""
        return os.path.exists(os.path.join(self.folder, LANDING))

    def fresh(self):
        """An empty staging folder."""
        shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder)

    def land(self, keep=()):
        """Replace the set's files by the staged ones (the staged names in keep stay behind, and go with the
        staging folder)."""
        staged = sorted(name for name in os.listdir(self.folder) if name != LANDING and name not in keep)
        files.atomic_write_json(os.path.join(self.folder, LANDING), {"names": staged})
        self.finish_landing()

    def finish_landing(self):
        """Carry out (or finish, after a crash) the landing recorded in the staging folder's LANDING file."""
        with open(os.path.join(self.folder, LANDING)) as file:
            new_names = set(json.load(file)["names"])
        still_staged = [name for name in os.listdir(self.folder) if name in new_names]
        old_files = self.owned()
        if any(self.is_marker(name) for name in still_staged):
            # the new marker moves last: while it is staged, every marker in exp_folder is the old set's, and it
            # goes first, so that the set reads as "not complete" until the new marker lands
            for path in old_files:
                if self.is_marker(os.path.basename(path)) and os.path.exists(path):
                    os.remove(path)
        for path in old_files:
            if os.path.basename(path) not in new_names and os.path.exists(path):
                os.remove(path)
        for name in sorted(still_staged, key=self.is_marker):
            os.replace(os.path.join(self.folder, name), os.path.join(self.exp_folder, name))
        files.sync_to_disk(self.exp_folder)  # the renames are durable before the record of them goes
        shutil.rmtree(self.folder)

    @contextlib.contextmanager
    def opened(self, wait_seconds=0.0):
        """Hold the set's lock for the block, after finishing an interrupted landing."""
        with lock(self.exp_folder, self.name, wait_seconds):
            if self.interrupted():
                self.finish_landing()
                print(f"finished replacing the files of {self.name} by its last run", file=sys.stderr)
            yield self


def model_stage(exp_folder, model_id):
    """The Stage of a model's run: every file of results_io.model_file_pattern; marker: its test CSV."""
    from brnpa.metrics.saliency import POST_HOC_NAMES
    pattern = results_io.model_file_pattern(model_id, POST_HOC_NAMES)

    def owned():
        return [os.path.join(exp_folder, name) for name in sorted(os.listdir(exp_folder)) if pattern.fullmatch(name)]
    return Stage(exp_folder, model_id, owned, lambda name: results_io.is_test_csv(name, model_id))


def curve_stage(exp_folder, source, metric_key):
    """The Stage of a source's set of one perturbation task (brnpa/metrics/tasks.py): its files; marker: the .json."""
    paths = results_io.att_metrics_paths(exp_folder, source, metric_key)
    meta_name = os.path.basename(paths["meta"])
    return Stage(exp_folder, results_io.curve_stage_name(source, metric_key),
                 lambda: [path for path in paths.values() if os.path.exists(path)], lambda name: name == meta_name)


def interrupted_stages(exp_folder):
    """Names of the Stages of exp_folder whose landing was interrupted."""
    names = []
    for entry in sorted(os.listdir(exp_folder)) if os.path.isdir(exp_folder) else []:
        if entry.startswith(".") and entry.endswith(".staging") and \
                os.path.exists(os.path.join(exp_folder, entry, LANDING)):
            names.append(entry[1:-len(".staging")])
    return names


def staged_config(exp_folder, model_id):
    """The config file named in the .ini a model's staging folder holds (None where there is none)."""
    path = results_io.config_path(results_io.staging_path(exp_folder, model_id), model_id)
    try:
        return load_run_config(path)[1].get("config")
    except (OSError, ValueError):
        return None


def plan(done_signature, wanted_signature, staged_signature, overwrite, resume):
    """What a run does: 'done' when the landed set was made with the wanted signature (and no --overwrite),
    'resume' when the staging folder holds an unfinished run of the same signature (and --resume), else
    'fresh'. A signature is a dict of what defines the run, or None where there is no such set."""
    if done_signature is not None and done_signature == wanted_signature and not overwrite:
        return "done"
    if staged_signature is not None and staged_signature == wanted_signature and resume:
        return "resume"
    return "fresh"


def check_results_folder(exp_folder, needed_bytes):
    """Create the results folder and check that it is writable with needed_bytes free; UserError otherwise."""
    try:
        os.makedirs(exp_folder, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the results folder {exp_folder}: {error.strerror} "
                        f"(choose another with --results_dir)") from None
    if not os.access(exp_folder, os.W_OK | os.X_OK):
        raise UserError(f"the results folder {exp_folder} is not writable (choose another with --results_dir)")
    free = shutil.disk_usage(exp_folder).free
    if free < needed_bytes:
        raise DiskFullError(f"only {free / 2 ** 20:.0f} MiB free in {exp_folder}, and this run needs about "
                            f"{needed_bytes / 2 ** 20:.0f} MiB for its checkpoints: free some space or choose "
                            f"another --results_dir")


@contextlib.contextmanager
def lock(exp_folder, name, wait_seconds=0.0):
    """Hold <exp_folder>/<name>.lock for the duration of the block.

    The lock is an flock on the file, which the system releases when its process dies, so the lock
    of a dead process is taken over. The file says who holds it (pid, host, start time, command).
    Another live holder: LockedError naming the lock, after waiting up to wait_seconds.
    """
    path = results_io.lock_path(exp_folder, name)
    if not os.path.isdir(exp_folder):
        raise UserError(f"the results folder {exp_folder} does not exist (was it renamed or moved?): check "
                        f"--results_dir and --exp_id")
    deadline = time.time() + wait_seconds
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            if holder_is_dead(holder):
                # the recorded process died, but a child it forked (a data loader worker) still holds the flock
                # for a few seconds: the file is replaced (unless another process replaced it already), and
                # the orphan keeps its lock on the old one
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                        os.remove(path)
                handle.close()
                continue
            handle.close()
            if time.time() < deadline:
                time.sleep(0.5)
                continue
            raise LockedError(f"{name} is in use: {path} is held by {describe_holder(holder)}. Wait for that "
                              f"process to end (a lock of a dead process is taken over)") from None
        if os.path.exists(path) and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # the holder removed the file between our open and our lock: try again
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}))
    handle.flush()
    try:
        yield
    finally:
        os.remove(path)
        handle.close()


def holder_is_dead(text):
    """Whether the lock record names a process of this host that no longer runs."""
    try:
        holder = json.loads(text)
        if holder["host"] != socket.gethostname():
            return False
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, PermissionError):
        return False
    return False


def describe_holder(text):
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def read_test_csv(path):
    """The single row of a test CSV as a dict of strings."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if len(rows) != 1:
        raise NotTrainedError(f"{path} should hold one row of test results, found {len(rows)}")
    return rows[0]


def load_model_for_inference(config, checkpoint_file, run_id, reference, remake):
    """The model a run's options describe (config: the resolved options), with the weights of its checkpoint,
    which must carry run_id; on the CPU, in eval mode. The one place a trained model is loaded: the test pass,
    a teacher, the curves and the benchmarks all go through it."""
    from brnpa.models.net import build_model  # torch models: imported when a model is needed
    from brnpa.runs.runtime import model_config
    checkpoint = read_checkpoint(checkpoint_file, f"; remake it with {remake}")
    check_same_run(checkpoint_file, checkpoint.get("run_id"), run_id, reference, remake)
    model = build_model(model_config(config, pretrained=False))
    load_weights(model, checkpoint, checkpoint_file)
    return model.eval(), checkpoint


# The progress files of a perturbation task's set, in its staging folder, start with this (progress_name).
PROGRESS_PREFIX = "partial"


def progress_name(rank, world_size):
    """The progress file of one process of a perturbation task, in the set's staging folder."""
    return f"{PROGRESS_PREFIX}.pth" if world_size == 1 else f"{PROGRESS_PREFIX}.rank{rank}of{world_size}.pth"


def read_progress(path):
    """What a progress file holds, {'signature': ..., 'records': {array name: per-image tensors}}, or None where
    there is none or it cannot be read (a damaged file only costs its work)."""
    if not os.path.exists(path):
        return None
    import torch
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return saved if isinstance(saved, dict) and "signature" in saved else None


def progress_signature(exp_folder, source, task_key):
    """The signature of the progress a stopped run of a perturbation task's set left in its staging folder (its
    first progress file), or None (none, or unreadable)."""
    folder = curve_stage(exp_folder, source, task_key).folder
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    names = [name for name in names if name.startswith(PROGRESS_PREFIX)]
    saved = read_progress(os.path.join(folder, names[0])) if names else None
    return None if saved is None else saved["signature"]


def set_options(signature, run_options):
    """The options that make a perturbation task's set of this signature (jobs/attention_metrics.set_signature):
    --att_metrics_img_nb (its image count), then --seed, --att_metrics_batch_size and the source's and task's
    options where the signature's value differs from run_options'. A list of words."""
    from brnpa.runs.args import OPTIONS
    values = {"att_metrics_img_nb": len(signature.get("images", ())),
              "att_metrics_batch_size": signature.get("batch_size")}
    not_options = ("run_id", "images", "step_cells", "batch_size", "post_hoc")  # signature keys, not options
    values.update({name: value for name, value in signature.items() if name in OPTIONS and name not in not_options})
    words = ["--att_metrics_img_nb", str(values.pop("att_metrics_img_nb"))]
    for name, value in values.items():
        if value is not None and value != getattr(run_options, name, None):
            words += [f"--{name}", str(value)]
    return words


class LandedRun:
    """A model's finished run, read from its files: run_id, args (the resolved options),
    metadata (of the .ini), test (the test CSV row), paths (test artifact paths), checkpoint_file,
    and remake, the command that trains the model again. args, when given, is the command at hand
    (for the CONFIG= of the hints)."""

    def __init__(self, exp_folder, model_id, args=None):
        paths = results_io.latest_test_paths(exp_folder, model_id)
        if paths is None:
            if model_stage(exp_folder, model_id).interrupted():
                raise NotTrainedError(f"the last run of '{model_id}' stopped while its files were being replaced "
                                      f"in {exp_folder}: run {train_command(args, model_id)} to finish it")
            raise NotTrainedError(f"'{model_id}' has no finished run in {exp_folder} (no "
                                  f"model{model_id}_epoch<E>_test.csv): train it first with "
                                  f"{train_command(args, model_id)}")
        self.exp_folder, self.model_id, self.paths = exp_folder, model_id, paths
        self.config_file = results_io.config_path(exp_folder, model_id)
        self.checkpoint_file = results_io.checkpoint_path(exp_folder, model_id)

        def remake_from_command():  # before the .ini is read, a hint can only carry the command's options
            return train_command(args, model_id, "--overwrite True")
        self.test = read_test_csv(paths["csv"])
        self.run_id = self.test.get("run_id")
        if not self.run_id:
            raise NotTrainedError(f"{paths['csv']} carries no run id (written by an older version of this "
                                  f"code): remake the model with {remake_from_command()}")
        for path in (self.config_file, self.checkpoint_file, paths["att_maps"], paths["norm"]):
            if not os.path.exists(path):
                raise NotTrainedError(f"{path} is missing beside {paths['csv']}: remake the model with "
                                      f"{remake_from_command()}")
        try:
            self.args, self.metadata = load_run_config(self.config_file)
        except ValueError as error:  # an option this version does not know, or a value it refuses
            raise NotTrainedError(f"cannot read {self.config_file} ({error}): it was written by another version "
                                  f"of this code; remake the model with {remake_from_command()}") from None
        # the folder it was read from, not the one it was trained in: in a copied or moved experiment, the hints
        # and what is computed from the run go to this folder
        folder = os.path.abspath(exp_folder)
        self.args = with_changes(self.args, results_dir=os.path.dirname(folder), exp_id=os.path.basename(folder))
        self.config = getattr(args, "config", None) or self.metadata.get("config")
        self.check_run_id(self.config_file, self.metadata.get("run_id"))

    @functools.cached_property
    def remake(self):
        """The command that trains the model again with the run's own options."""
        return train_command(self.args, self.model_id, "--overwrite True", config=self.config,
                             search_trial="search_trial" in self.metadata)

    def check_run_id(self, path, run_id, remake=None):
        """NotTrainedError unless the file at path, which says it is of run_id, is of this run; the message
        names remake (default: the command that trains the model again)."""
        if run_id != self.run_id:
            check_same_run(path, run_id, self.run_id, self.paths["csv"], remake or self.remake)

    def still_landed(self):
        """Whether the model's test CSV is still this run's (it was not trained again meanwhile)."""
        try:
            return read_test_csv(self.paths["csv"]).get("run_id") == self.run_id
        except (OSError, NotTrainedError):
            return False

    def curves_command(self, task_key, source=None, signature=None):
        """The command that remakes the set of a perturbation task (brnpa/metrics/tasks.py key) of a source of this
        model: its own maps (source None or the model id), or a post-hoc one ('<model_id>-<method>'). signature:
        the signature of the set to remake (its .json's, or its saved progress'), whose image count is written
        out, and its seed and options where they differ from the run's: the command then makes that same set
        (and resumes its progress) rather than one of the run's default size."""
        from brnpa.metrics.saliency import POST_HOC_NAMES
        from brnpa.metrics.tasks import task
        method = None if source is None else results_io.parse_source_id(source, POST_HOC_NAMES)[1]
        extra = ["--att_metrics_post_hoc", method] if method else []
        if signature is not None:
            extra += set_options(signature, self.args)
        return train_command(self.args, self.model_id, *extra, script=task(task_key).script_call, config=self.config)

    def load_model(self):
        """(model on the CPU in eval mode with the run's best weights, checkpoint dict)."""
        return load_model_for_inference(self.args, self.checkpoint_file, self.run_id, self.paths["csv"],
                                        self.remake)
