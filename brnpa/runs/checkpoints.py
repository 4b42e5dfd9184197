"""The one object that owns a run's checkpoints, and the one way a checkpoint is read.

Two kinds of record, each a dict whose keys are listed here once, with a format version:
- best (model<ID>_best.pth): the weights of the best validation epoch;
- last (model<ID>_last.pth, in the staging folder): everything a killed run needs to resume after its last
  finished epoch (weights, optimiser, random states, early-stopping counters, the per-epoch rows).
Writes are atomic (results_io). Reading checks the format, the keys and the run id.
"""
import io

import torch

from brnpa.core import files
from brnpa.core.errors import CheckpointError

FORMAT = 2
BEST_KEYS = ("format", "run_id", "model", "epoch", "val_accuracy", "searched")
# the training loop's own state, saved with the last record and given back by restore_last
LOOP_STATE_KEYS = ("epoch", "best_value", "best_epoch", "worse_epochs", "rows", "finished")
LAST_KEYS = ("format", "run_id", "model", "optimizer", "torch_rng", "cuda_rng") + LOOP_STATE_KEYS


def record(keys, **values):
    """A checkpoint record with exactly the listed keys (a missing or extra key is a bug, not a file problem)."""
    if set(values) != set(keys) - {"format"}:
        raise KeyError(f"checkpoint record keys {sorted(values)} differ from {sorted(set(keys) - {'format'})}")
    return {"format": FORMAT, **values}


def read_checkpoint(path, remake_hint="", data=None):
    """The dict saved in a checkpoint file; CheckpointError naming the file when it cannot be read. A
    record written before format 2 has its searched values under 'hparams': they are read as 'searched'.
    data: the file's bytes, already read (path then only names the file in messages)."""
    try:
        checkpoint = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing{remake_hint}") from None
    except Exception as error:  # truncated zip, not a torch file, unpickling error: all mean unreadable
        raise CheckpointError(f"cannot read checkpoint {path} ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no detail'}): it is truncated "
                              f"or not a checkpoint{remake_hint}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' entry){remake_hint}")
    if checkpoint.get("format", 1) == 1 and "hparams" in checkpoint:
        checkpoint["searched"] = checkpoint.pop("hparams")
    return checkpoint


def load_weights(model, checkpoint, path):
    """Load a checkpoint dict's weights strictly; a mismatch names the differing keys."""
    missing = set(model.state_dict()) - set(checkpoint["model"])
    unexpected = set(checkpoint["model"]) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {sorted(missing)[:10]}, "
                              f"unexpected keys {sorted(unexpected)[:10]} (was it trained with other options?)")
    model.load_state_dict(checkpoint["model"])


class Checkpoints:
    """A run's checkpoints: best (path) and last (path or None: a search trial does not resume), all
    carrying run_id."""

    def __init__(self, best_path, last_path, run_id):
        self.best_path, self.last_path, self.run_id = best_path, last_path, run_id

    def save_best(self, model, epoch, val_accuracy, searched):
        """searched: {name: value} of the searchable options the run used (a search's best trial is
        rebuilt from them)."""
        files.atomic_save_torch(self.best_path, record(
            BEST_KEYS, run_id=self.run_id, model=model.state_dict(), epoch=epoch, val_accuracy=val_accuracy,
            searched=searched))

    def save_last(self, model, optimizer, loop_state):
        """Everything a resumed run needs after this epoch, random states included."""
        if self.last_path is None:
            return
        files.atomic_save_torch(self.last_path, record(
            LAST_KEYS, run_id=self.run_id, model=model.state_dict(), optimizer=optimizer.state_dict(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **{key: loop_state[key] for key in LOOP_STATE_KEYS}))

    def restore_last(self, model, optimizer):
        """Load the last record into model and optimiser and restore the random states; returns the loop
        state ({LOOP_STATE_KEYS}). The record must be of this run."""
        checkpoint = read_checkpoint(self.last_path, "; run with --resume False to start over")
        if checkpoint.get("run_id") != self.run_id or checkpoint.get("format") != FORMAT:
            raise CheckpointError(f"{self.last_path} belongs to run {checkpoint.get('run_id')} (format "
                                  f"{checkpoint.get('format', 1)}), not {self.run_id}: run with --resume False to "
                                  f"start over")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        return {key: checkpoint[key] for key in LOOP_STATE_KEYS}
