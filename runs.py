"""One run, one identity: run ids, the staging folder a run works in, landing its files as the model's,
the lock that keeps two processes off one model, and reading a landed run back.

A training run gets a run id (12 hex digits) when it starts. It writes everything into
<exp_folder>/.<model_id>.staging/: the resolved .ini (with `run_id = ...`), the checkpoints
(each holding the run id), the per-epoch metrics, then the test CSV (with a run_id column), maps
and norms. Landing replaces the model's files by the staged ones:

1. a LANDING file listing the staged names is written in the staging folder;
2. the model's old test CSVs are removed first (the test CSV is what says "this model has a finished
   run"), then its other old files, curves included;
3. the staged files are moved in, the test CSV last, and the staging folder is removed.

A crash anywhere leaves either the old run (before 1), a model without test CSV that the next run
of the command finishes landing (1 to 3), or the new run: never a mix that a reader accepts.
Readers check that the test CSV, the .ini and the checkpoint carry one run id.
"""
import contextlib
import csv
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid

import results_io
from args import load_run_config
from runtime import DiskFullError, UserError, read_checkpoint

LANDING = "LANDING"


class NotTrainedError(UserError):
    """The model has no finished run, or its files do not belong to one run."""


class LockedError(UserError):
    """Another live process holds the model's lock."""


def new_run_id():
    return uuid.uuid4().hex[:12]


def train_command(args, model_id, *options, script="train.sh", config=None):
    """The command that (re)makes a model's files, with the CONFIG= in use (the scripts' default is
    config_cub.config): args.config, or `config` where args does not know it."""
    config = getattr(args, "config", None) or config
    prefix = f"CONFIG={config} " if config and os.path.basename(config) != "config_cub.config" else ""
    return " ".join([f"{prefix}./{script} {model_id}", *options])


def staging_folder(exp_folder, model_id):
    return os.path.join(exp_folder, f".{model_id}.staging")


def model_file_paths(exp_folder, model_id):
    """Existing files of the model in exp_folder: test artifacts of any epoch, checkpoint, per-epoch
    metrics, .ini, best search parameters, and the curves (and post-hoc maps) computed from it."""
    names = [os.path.basename(path) for epoch in results_io.find_test_epochs(exp_folder, model_id)
             for path in results_io.test_paths(exp_folder, model_id, epoch).values()]
    names += [os.path.basename(results_io.checkpoint_path(exp_folder, model_id)),
              os.path.basename(results_io.epoch_metrics_path(exp_folder, model_id)),
              os.path.basename(results_io.config_path(exp_folder, model_id)), f"{model_id}_best_params.json"]
    derived = re.compile(rf"attMetr(Del|Add)_{re.escape(model_id)}(-[a-z0-9]+)?"
                         rf"(\.npy|_imgInds\.npy|_preds\.npy|_targets\.npy|\.json)"
                         rf"|attMaps{re.escape(model_id)}-[a-z0-9]+_test\.(npy|json)")
    names += [name for name in os.listdir(exp_folder) if derived.fullmatch(name)]
    return [os.path.join(exp_folder, name) for name in names if os.path.exists(os.path.join(exp_folder, name))]


def land(exp_folder, model_id, staging):
    """Replace the model's files in exp_folder by the staged ones (see the module docstring).
    The resume state (model<ID>_last.pth) stays behind and goes with the staging folder."""
    staged = sorted(name for name in os.listdir(staging) if name != LANDING and not name.endswith("_last.pth"))
    results_io.atomic_write_json(os.path.join(staging, LANDING), {"names": staged})
    finish_landing(exp_folder, model_id, staging)


def finish_landing(exp_folder, model_id, staging):
    """Carry out (or finish, after a crash) the landing recorded in staging/LANDING."""
    with open(os.path.join(staging, LANDING)) as file:
        new_names = set(json.load(file)["names"])
    still_staged = [name for name in os.listdir(staging) if name in new_names]
    if any(is_test_csv(name, model_id) for name in still_staged):
        # the new test CSV moves last: while it is staged, every test CSV in exp_folder is the old run's,
        # and it goes first, so that the model reads as "no finished run" until the new CSV lands
        for epoch in results_io.find_test_epochs(exp_folder, model_id):
            os.remove(results_io.test_paths(exp_folder, model_id, epoch)["csv"])
    for path in model_file_paths(exp_folder, model_id):
        if os.path.basename(path) not in new_names:
            os.remove(path)
    for name in sorted(still_staged, key=lambda name: is_test_csv(name, model_id)):
        os.replace(os.path.join(staging, name), os.path.join(exp_folder, name))
    shutil.rmtree(staging)


def is_test_csv(name, model_id):
    return re.fullmatch(rf"model{re.escape(model_id)}_epoch\d+_test\.csv", name) is not None


def interrupted_landing(exp_folder, model_id):
    return os.path.exists(os.path.join(staging_folder(exp_folder, model_id), LANDING))


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
    path = os.path.join(exp_folder, f"{name}.lock")
    deadline = time.time() + wait_seconds
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
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


class LandedRun:
    """A model's finished run, read from its files: run_id, args (the resolved options),
    metadata (of the .ini), test (the test CSV row), paths (test artifact paths), checkpoint_file,
    and remake, the command that trains the model again. args, when given, is the command at hand
    (for the CONFIG= of the hints)."""

    def __init__(self, exp_folder, model_id, args=None):
        paths = results_io.latest_test_paths(exp_folder, model_id)
        if paths is None:
            if interrupted_landing(exp_folder, model_id):
                raise NotTrainedError(f"the last run of '{model_id}' stopped while its files were being replaced "
                                      f"in {exp_folder}: run {train_command(args, model_id)} to finish it")
            raise NotTrainedError(f"'{model_id}' has no finished run in {exp_folder} (no "
                                  f"model{model_id}_epoch<E>_test.csv): train it first with "
                                  f"{train_command(args, model_id)}")
        self.model_id, self.paths = model_id, paths
        self.config_file = results_io.config_path(exp_folder, model_id)
        self.checkpoint_file = results_io.checkpoint_path(exp_folder, model_id)
        self.remake = train_command(args, model_id, "--overwrite True")
        self.test = read_test_csv(paths["csv"])
        self.run_id = self.test.get("run_id")
        if not self.run_id:
            raise NotTrainedError(f"{paths['csv']} carries no run id (written by an older version of this "
                                  f"code): remake the model with {self.remake}")
        for path in (self.config_file, self.checkpoint_file, paths["att_maps"], paths["norm"]):
            if not os.path.exists(path):
                raise NotTrainedError(f"{path} is missing beside {paths['csv']}: remake the model with "
                                      f"{self.remake}")
        self.args, self.metadata = load_run_config(self.config_file)
        self.config = getattr(args, "config", None) or self.metadata.get("config")
        self.remake = train_command(args, model_id, "--overwrite True", config=self.config)
        if self.metadata.get("run_id") != self.run_id:
            raise NotTrainedError(f"{self.config_file} (run {self.metadata.get('run_id')}) and {paths['csv']} "
                                  f"(run {self.run_id}) come from different runs: remake the model with "
                                  f"{self.remake}")

    def curves_command(self, metric, *options):
        """The command that remakes this model's curves for metric 'Del' or 'Add'."""
        script = "get_dauc_scores.sh" if metric == "Del" else "get_iauc_scores.sh"
        return train_command(None, self.model_id, *options, script=script, config=self.config)

    def read_checkpoint(self):
        """The checkpoint dict, which must carry this run's id."""
        checkpoint = read_checkpoint(self.checkpoint_file, f"; remake it with {self.remake}")
        if checkpoint.get("run_id") != self.run_id:
            raise NotTrainedError(f"{self.checkpoint_file} (run {checkpoint.get('run_id')}) and "
                                  f"{self.paths['csv']} (run {self.run_id}) come from different runs: remake the "
                                  f"model with {self.remake}")
        return checkpoint
