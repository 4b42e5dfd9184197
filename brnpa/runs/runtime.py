"""Helpers shared by the tasks (training, search, DAUC / IAUC): device, precision, memory layout, progress
(bars on a terminal, timed lines in a log), seeding, and the model configuration of a run's options."""
import contextlib
import dataclasses
import sys
import time

import numpy as np
import torch
from tqdm import tqdm


def get_device(use_cuda):
    """CUDA when asked for and present (this process's GPU under torchrun); --cuda True without a GPU runs on
    the CPU (the default works anywhere)."""
    if use_cuda and torch.cuda.is_available():
        from brnpa.core import distributed
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


# Seconds between two progress lines when stderr is not a terminal; trainVal.py sets it from --progress_interval.
PROGRESS_INTERVAL = {"seconds": 30.0}


def progress(iterable, desc, total=None, initial=0, images_of=None, image_total=None):
    """A tqdm bar on a terminal. Elsewhere (a batch job's log file) a LogLines line every PROGRESS_INTERVAL
    seconds, counting images: images_of(item) per item of iterable (1 by default), image_total in all
    (default: total, or len(iterable)); update(n) adds n images by hand."""
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, leave=False)
    if image_total is None:
        image_total = total if total is not None or not hasattr(iterable, "__len__") else len(iterable)
    return LogLines(iterable, desc, image_total, initial, images_of, PROGRESS_INTERVAL["seconds"])


def duration(seconds):
    """m:ss, or h:mm:ss from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LogLines:
    """Progress for a log: iterating passes the items through, and at most every `interval` seconds one line
    goes to the stream (stderr): '<desc>: <done> of <total> images, <rate> images/s, <m:ss> left'. The rate
    counts the images of this pass only (initial: images done before, by a run that resumed). clock: a
    function giving seconds (time.monotonic; the tests pass their own)."""

    def __init__(self, iterable, desc, total, initial=0, images_of=None, interval=30.0, clock=time.monotonic,
                 stream=None):
        self.iterable, self.desc, self.total, self.images_of = iterable, desc, total, images_of
        self.interval, self.clock, self.stream = interval, clock, stream
        self.done = self.initial = initial
        self.start = self.last_line = clock()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1 if self.images_of is None else self.images_of(item))

    def update(self, images):
        self.done += images
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            print(self.line(now), file=self.stream or sys.stderr, flush=True)

    def line(self, now):
        rate = (self.done - self.initial) / max(now - self.start, 1e-9)
        of_total = "" if self.total is None else f" of {self.total}"
        left = "" if self.total is None or rate == 0 else f", {duration((self.total - self.done) / rate)} left"
        return f"{self.desc}: {self.done}{of_total} images, {rate:.1f} images/s{left}"

    def close(self):
        pass


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def pick(config_class, options, **changes):
    """A small typed config (a dataclass) from the run's resolved options of the same names, with changes:
    the tasks hand these, not the options, to brnpa/models/, brnpa/metrics/ and the data functions."""
    values = {field.name: getattr(options, field.name) for field in dataclasses.fields(config_class)}
    return config_class(**{**values, **changes})


def model_config(options, **changes):
    """The models.net.ModelConfig of a run's options."""
    from brnpa.models.net import ModelConfig
    return pick(ModelConfig, options, **changes)


def data_config(options):
    """(load_data.Folders, load_data.Geometry, load_data.Augmentation) of a run's options."""
    from brnpa.data.load_data import Augmentation, Folders, Geometry
    return pick(Folders, options), pick(Geometry, options), pick(Augmentation, options)


def pin_memory(options):
    return options.cuda and torch.cuda.is_available()
