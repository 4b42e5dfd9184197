"""Ground-floor helpers shared by the tasks (training, search, DAUC / IAUC): errors a user can fix,
device, precision, progress bars, seeding and strict checkpoint loading."""
import contextlib
import errno
import sys

import numpy as np
import torch
from tqdm import tqdm


class UserError(Exception):
    """A problem the user can fix (bad option, missing or inconsistent file, full disk): the entry points
    print it as one line, 'error: ...', without a traceback (--debug True shows it)."""


class DiskFullError(UserError):
    """No space left where a result file was being written."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read (truncated, not a checkpoint) or does not fit the model."""


DISK_FULL_TEXTS = ("no space left", "disk is full", "database or disk is full", "file write failed")


def disk_full_cause(error):
    """The exception in error's chain (itself, its cause or its context) that says the disk is full, or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        if any(text in str(error).lower() for text in DISK_FULL_TEXTS):
            return error
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def disk_full_as_user_error():
    """Turn any error caused by a full disk (an OSError, torch's or SQLite's message, optuna's assertion
    after a failed storage write) into DiskFullError."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        cause = disk_full_cause(error)
        if cause is None:
            raise
        raise DiskFullError(f"the disk is full ({type(cause).__name__}: {str(cause).splitlines()[0]}). Free some "
                            f"space and run the same command again: it resumes") from error


def get_device(args):
    """CUDA when asked for and present (this process's GPU under torchrun); --cuda True without a GPU runs on
    the CPU (the default works anywhere)."""
    if args.cuda and torch.cuda.is_available():
        import distributed
        return distributed.cuda_device()
    return torch.device("cpu")


def autocast(device, enabled):
    """bf16 autocast on the device when enabled; float32 otherwise."""
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_amp(args, device):
    """Training runs in bf16 on CUDA with --amp (the default); always float32 on the CPU."""
    return args.amp and device.type == "cuda"


def memory_format(args, device):
    """channels_last on CUDA with --channels_last (the default), the tensor's own layout elsewhere."""
    return torch.channels_last if args.channels_last and device.type == "cuda" else torch.preserve_format


def prepare_model(model, device, args):
    """The model on the device, in channels_last where that is asked for and supported."""
    return model.to(device).to(memory_format=memory_format(args, device))


def progress(iterable, **kwargs):
    """tqdm bar, quiet when stderr is not a terminal."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, **kwargs)


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def read_checkpoint(path, remake_hint=""):
    """The dict saved in a checkpoint file; CheckpointError naming the file when it cannot be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing{remake_hint}") from None
    except Exception as error:  # truncated zip, not a torch file, unpickling error: all mean unreadable
        raise CheckpointError(f"cannot read checkpoint {path} ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else 'no detail'}): it is truncated "
                              f"or not a checkpoint{remake_hint}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' entry){remake_hint}")
    return checkpoint


def load_checkpoint(model, path, remake_hint=""):
    """Load a checkpoint's weights strictly; a mismatch names the differing keys. Returns the checkpoint dict."""
    checkpoint = read_checkpoint(path, remake_hint)
    missing, unexpected = set(model.state_dict()) - set(checkpoint["model"]), \
        set(checkpoint["model"]) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing keys {sorted(missing)[:10]}, "
                              f"unexpected keys {sorted(unexpected)[:10]} (was it trained with other options?)")
    model.load_state_dict(checkpoint["model"])
    return checkpoint
