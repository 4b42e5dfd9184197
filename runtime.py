"""Helpers shared by the tasks (training, search, DAUC / IAUC): device, precision, memory layout, progress
bars, seeding, and the model configuration of a run's options."""
import contextlib
import dataclasses
import sys

import numpy as np
import torch
from tqdm import tqdm


def get_device(use_cuda):
    """CUDA when asked for and present (this process's GPU under torchrun); --cuda True without a GPU runs on
    the CPU (the default works anywhere)."""
    if use_cuda and torch.cuda.is_available():
        import distributed
        return distributed.cuda_device()
    return torch.device("cpu")


def autocast(device, enabled):
    """bf16 autocast on the device when enabled; float32 otherwise."""
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_amp(amp, device):
    """Training runs in bf16 on CUDA with --amp (the default); always float32 on the CPU."""
    return amp and device.type == "cuda"


def memory_format(channels_last, device):
    """channels_last on CUDA with --channels_last (the default), the tensor's own layout elsewhere."""
    return torch.channels_last if channels_last and device.type == "cuda" else torch.preserve_format


def prepare_model(model, device, layout):
    """The model on the device, in the memory layout of memory_format."""
    return model.to(device).to(memory_format=layout)


def progress(iterable, **kwargs):
    """tqdm bar, quiet when stderr is not a terminal."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, **kwargs)


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def pick(config_class, options, **changes):
    """A small typed config (a dataclass) from the run's resolved options of the same names, with changes:
    the tasks hand these, not the options, to models/, metrics/ and the data functions."""
    values = {field.name: getattr(options, field.name) for field in dataclasses.fields(config_class)}
    return config_class(**{**values, **changes})


def model_config(options, **changes):
    """The models.net.ModelConfig of a run's options."""
    from models.net import ModelConfig
    return pick(ModelConfig, options, **changes)


def data_config(options):
    """(load_data.Folders, load_data.Geometry, load_data.Augmentation) of a run's options."""
    from load_data import Augmentation, Folders, Geometry
    return pick(Folders, options), pick(Geometry, options), pick(Augmentation, options)


def pin_memory(options):
    return options.cuda and torch.cuda.is_available()
