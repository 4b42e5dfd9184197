"""Ground-floor helpers shared by the tasks (training, search, DAUC / IAUC): device, precision,
progress bars, seeding and strict checkpoint loading."""
import contextlib
import sys

import numpy as np
import torch
from tqdm import tqdm


def get_device(args):
    """CUDA when asked for and present; --cuda True without a GPU runs on the CPU (the default works anywhere)."""
    return torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")


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


def load_checkpoint(model, path):
    """Load a checkpoint's weights strictly; a mismatch names the differing keys. Returns the checkpoint dict."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = set(model.state_dict()) - set(checkpoint["model"]), \
        set(checkpoint["model"]) - set(model.state_dict())
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {path} does not match the model: missing keys {sorted(missing)[:10]}, "
                           f"unexpected keys {sorted(unexpected)[:10]} (was it trained with other options?)")
    model.load_state_dict(checkpoint["model"])
    return checkpoint
