"""The training loop, validation and the test pass of one model (docs/METHOD.md, "Training" and "Test
artifacts"). The loop writes the per-epoch CSV and the checkpoints it is handed (checkpoints.Checkpoints);
where a run's files go, run ids, staging and landing are brnpa/jobs/train_task.py's and brnpa/jobs/search.py's.

train_model and test_model take the run's configuration (the resolved options; for a search trial, the
same with the sampled values replaced). train_one_epoch and evaluate take explicit arguments.
"""
import contextlib
import dataclasses
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from brnpa.core import files
from brnpa.core import distributed
from brnpa.runs import lifecycle
from brnpa.runs.args import OPTIMISERS, SEARCHABLE
from brnpa.core.errors import UserError
from brnpa.data.load_data import build_transform, make_loader, make_train_loader, set_loader_epoch
from brnpa.metrics.attention import scale_to_uint8, sparsity
from brnpa.models.net import AUX_SLICES, build_model
from brnpa.runs.runtime import (autocast, data_config, get_device, memory_format, model_config, pin_memory,
                                prepare_model, progress, seed_everything, train_amp)

METRICS_HEADER = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """How a training step runs: chunks of at most chunk_size images per forward pass, batch_size images per
    optimiser step, whether the batches are cut as the released loop cut them (released_step_chunks), the
    loss weights and the distillation values, bf16 autocast or not, the memory layout of the batches."""
    chunk_size: int
    batch_size: int = 0
    released_batch_cut: bool = False
    nll_weight: float = 1.0
    kl_interp: float = 0.5
    kl_temp: float = 1.0
    amp: bool = False
    layout: torch.memory_format = torch.preserve_format


def lr_factor(epoch, use_scheduler):
    """Learning-rate multiplier of a 1-based epoch: 0.9 ** floor(epoch / 2) with the scheduler
    (1, 0.9, 0.9, 0.81, 0.81, ...: StepLR(step_size=2, gamma=0.9) stepped once before training,
    as the authors did), 1 without."""
    return 0.9 ** (epoch // 2) if use_scheduler else 1.0


def build_optimizer(params, optim, lr, momentum=0.0, weight_decay=0.0):
    if optim == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optim == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optim == "AMSGrad":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, amsgrad=True)
    raise ValueError(f"optim must be one of {', '.join(OPTIMISERS)}, got '{optim}'")


def distillation_loss(student_logits, teacher_logits, target, kl_interp, kl_temp):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), batch means."""
    kl = F.kl_div(F.log_softmax(student_logits / kl_temp, dim=1), F.softmax(teacher_logits / kl_temp, dim=1),
                  reduction="batchmean")
    return kl_interp * kl_temp ** 2 * kl + (1 - kl_interp) * F.cross_entropy(student_logits, target)


def compute_loss(result, target, nll_weight, teacher_logits=None, kl_interp=0.5, kl_temp=1.0):
    """(Classification or distillation loss + one CE per auxiliary head) times nll_weight."""
    logits = result["output"].float()
    if teacher_logits is None:
        loss = F.cross_entropy(logits, target)
    else:
        loss = distillation_loss(logits, teacher_logits.float(), target, kl_interp, kl_temp)
    for aux_logits in result.get("aux", {}).values():
        loss = loss + F.cross_entropy(aux_logits.float(), target)
    return nll_weight * loss


def to_device(images, target, device, layout):
    images = images.to(device, non_blocking=True).contiguous(memory_format=layout)
    return images, target.to(device, non_blocking=True)


class MetricSums:
    """Sums of loss and correct predictions kept on the device: no host sync per batch."""

    def __init__(self, device, aux_names=()):
        self.names = ("",) + tuple(aux_names)
        self.sums = torch.zeros(2 + len(self.names), device=device, dtype=torch.float64)  # loss, count, corrects

    def add(self, loss, result, target):
        self.sums[0] += loss.detach().double() * len(target)
        self.sums[1] += len(target)
        self.sums[2] += (result["output"].argmax(dim=1) == target).sum()
        for index, name in enumerate(self.names[1:], start=3):
            self.sums[index] += (result["aux"][name].argmax(dim=1) == target).sum()

    def means(self):
        """{'loss', 'accuracy', 'accuracy_<aux>'} as floats over every process's images (one host sync)."""
        loss, count, *correct = distributed.all_reduce_sum(self.sums).tolist()
        values = {"loss": loss / max(count, 1)}
        for name, correct_nb in zip(self.names, correct):
            values["accuracy" + (f"_{name}" if name else "")] = correct_nb / max(count, 1)
        return values


def aux_names(model):
    return tuple(AUX_SLICES) if getattr(unwrap(model), "aux", None) is not None else ()


def unwrap(model):
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def local_share(samples):
    """This process's contiguous share of a list (all of it with one process)."""
    start, stop = distributed.shard_bounds(len(samples))
    return samples[start:stop]


def step_chunks(loader, chunk_size):
    """The optimiser steps of an epoch, each a list of (images, target) chunks: one step per loader batch,
    cut into chunks of at most chunk_size images."""
    for images, target in loader:
        yield list(zip(images.split(chunk_size), target.split(chunk_size)))


def released_step_chunks(loader, batch_size):
    """The optimiser steps of an epoch as the authors' released loop formed them, each a list of (images,
    target) chunks: the loader gives batches of at most the chunk size, which are gathered until they hold
    batch_size images; the batch that would overflow is cut to the images still missing, and its other images
    are not trained on (with batch 12 and chunk 9, 9 + 3 of every 18 images). What is gathered when the epoch
    ends is a last, smaller step."""
    group, size = [], 0
    for images, target in loader:
        keep = min(len(target), batch_size - size)
        group.append((images[:keep], target[:keep]))
        size += keep
        if size == batch_size:
            yield group
            group, size = [], 0
    if group:
        yield group


def dataset_size(loader):
    """Images a loader goes through in an epoch (None for a plain list of batches)."""
    return len(loader.dataset) if hasattr(loader, "dataset") else None


def train_one_epoch(model, loader, optimizer, device, step, teacher=None):
    """One epoch. The gradients of a step's chunks (step_chunks, or released_step_chunks with
    step.released_batch_cut) accumulate, weighted by their image counts, into ONE optimiser step.
    step: a StepConfig."""
    model.train()
    sums = MetricSums(device, aux_names(model))
    steps = released_step_chunks(loader, step.batch_size) if step.released_batch_cut \
        else step_chunks(loader, step.chunk_size)
    for chunks in progress(steps, "train", total=None if step.released_batch_cut else len(loader),
                           images_of=lambda chunks: sum(len(target) for _, target in chunks),
                           image_total=dataset_size(loader)):
        optimizer.zero_grad(set_to_none=True)
        step_images = sum(len(chunk_target) for _, chunk_target in chunks)
        for chunk_index, (chunk_images, chunk_target) in enumerate(chunks):
            chunk_images, chunk_target = to_device(chunk_images, chunk_target, device, step.layout)
            # several processes: gradients are averaged across them once, after the last chunk
            last_chunk = chunk_index == len(chunks) - 1
            sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last_chunk \
                else contextlib.nullcontext()
            with sync, autocast(device, step.amp):
                result = model(chunk_images)
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(chunk_images)["output"]
                loss = compute_loss(result, chunk_target, step.nll_weight, teacher_logits, step.kl_interp,
                                    step.kl_temp)
            (loss * len(chunk_target) / step_images).backward()
            sums.add(loss, result, chunk_target)
        optimizer.step()
    return sums.means()


@torch.no_grad()
def evaluate(model, loader, device, nll_weight=1.0, amp=False, layout=torch.preserve_format, collect_maps=False):
    """Loss and accuracies on a loader; with collect_maps also the uint8 maps and norms
    (loader order) and the mean sparsity. float32 unless amp (bf16 autocast, --amp_eval True).
    With several processes, each passes the loader of its share of the images: the metrics are
    reduced over all of them, and the maps and norms gathered in order."""
    model.eval()
    sums = MetricSums(device, aux_names(model))
    maps, norms, sparsities = [], [], []
    for images, target in progress(loader, "eval", images_of=lambda batch: len(batch[1]),
                                   image_total=dataset_size(loader)):
        images, target = to_device(images, target, device, layout)
        with autocast(device, amp):
            result = model(images)
            loss = compute_loss(result, target, nll_weight)
        sums.add(loss, result, target)
        if collect_maps:
            att_maps, norm = result["att_maps"].float(), result["norm"].float()
            sparsities.append(sparsity(att_maps, norm))
            maps.append(scale_to_uint8(att_maps))  # kept on the device: one copy at the end, no sync per batch
            norms.append(scale_to_uint8(norm))
    values = sums.means()
    if collect_maps:
        local = [(torch.cat(parts).cpu().numpy() if parts else None) for parts in (sparsities, maps, norms)]
        gathered = [[part for part in distributed.gather_in_order([array]) if part is not None] for array in local]
        sparsity_values, all_maps, all_norms = (np.concatenate(parts) for parts in gathered)
        values["sparsity"] = float(sparsity_values.mean())
        return values, all_maps, all_norms
    return values


def step_config(config, device):
    """The StepConfig of a run's configuration."""
    return StepConfig(chunk_size=config.max_batch_size_single_pass, batch_size=config.batch_size,
                      released_batch_cut=config.released_batch_cut, nll_weight=config.nll_weight,
                      kl_interp=config.kl_interp, kl_temp=config.kl_temp, amp=train_amp(config.amp, device),
                      layout=memory_format(config.channels_last, device))


def build_train_loaders(config, samples):
    """(train loader, validation loader) of a run's configuration: validation sees the run's own crop
    ratio, like the test."""
    _, geometry, augmentation = data_config(config)
    # several processes share the global batch: each takes its part of every batch (rounded up)
    process_batch = math.ceil(config.batch_size / distributed.world_size())
    if config.released_batch_cut:  # the released loader: batches of at most one chunk
        if distributed.world_size() > 1:
            raise UserError("--released_batch_cut True reproduces the released single-process loop: run it "
                            "without torchrun")
        process_batch = min(config.batch_size, config.max_batch_size_single_pass)
    train_loader = make_train_loader(samples["train"], build_transform(geometry, augmentation), process_batch,
                                     config.seed, config.num_workers, pin_memory(config), distributed.rank(),
                                     distributed.world_size())
    val_loader = make_loader(local_share(samples["val"]), build_transform(geometry), config.val_batch_size,
                             config.num_workers, pin_memory(config))
    return train_loader, val_loader


def searched_values(config):
    """{name: value} of the searchable options in a run's configuration (saved with its best checkpoint)."""
    return {name: getattr(config, name) for name in SEARCHABLE}


def train_model(config, samples, checkpoints, metrics_file, report=None, teacher=None, resume=False):
    """Train with early stopping. Returns (best value of --metric_early_stop on validation, best epoch).

    config: the run's configuration (a trial's has its sampled values). checkpoints: a
    checkpoints.Checkpoints (best weights, and the resume state written after every epoch). metrics_file:
    the per-epoch CSV. With resume and an existing resume state, training continues after its epoch with
    the saved weights, optimiser, random state and early-stopping counters, so the result equals an
    uninterrupted run's. report(epoch, validation metric) is called after each epoch (a search uses it to
    prune).
    """
    seed_everything(config.seed)
    device = get_device(config.cuda)
    step = step_config(config, device)
    model = prepare_model(build_model(model_config(config)), device, step.layout)
    if distributed.world_size() > 1:
        if config.sync_bn:
            model = distributed.sync_batchnorm(model, device)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model.parameters(), config.optim, config.lr, config.momentum, config.weight_decay)
    train_loader, val_loader = build_train_loaders(config, samples)
    state = {"epoch": 0, "best_value": -math.inf, "best_epoch": None, "worse_epochs": 0, "rows": [],
             "finished": False}
    if resume and checkpoints.last_path is not None and os.path.exists(checkpoints.last_path):
        state = checkpoints.restore_last(unwrap(model), optimizer)
        if distributed.is_main():
            print(f"resuming '{config.model_id}' after epoch {state['epoch']} (run {checkpoints.run_id}, "
                  f"{checkpoints.last_path}); --resume False starts over", file=sys.stderr)
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["finished"]:
            break
        start = time.time()
        lr = config.lr * lr_factor(epoch, config.use_scheduler)
        for group in optimizer.param_groups:
            group["lr"] = lr
        set_loader_epoch(train_loader, epoch)
        train_values = train_one_epoch(model, train_loader, optimizer, device, step, teacher)
        if not math.isfinite(train_values["loss"]):
            raise FloatingPointError(f"training loss is {train_values['loss']} at epoch {epoch}")
        val_values = evaluate(model, val_loader, device, config.nll_weight, config.amp_eval, step.layout)
        value = val_values[config.metric_early_stop]
        improved = value > state["best_value"]
        if improved:
            state.update(best_value=value, best_epoch=epoch, worse_epochs=0)
        else:
            state["worse_epochs"] += 1
        state["rows"].append([epoch, train_values["loss"], train_values["accuracy"], val_values["loss"],
                              val_values["accuracy"], lr, round(time.time() - start, 2)])
        state.update(epoch=epoch, finished=state["worse_epochs"] >= config.max_worse_epoch_nb
                     or epoch == config.epochs)
        if distributed.is_main():  # every process holds the same weights and values; one writes them
            if improved:
                checkpoints.save_best(unwrap(model), epoch, value, searched_values(config))
            files.atomic_write_csv(metrics_file, METRICS_HEADER, state["rows"])
            checkpoints.save_last(unwrap(model), optimizer, state)
            print(f"epoch {epoch}: train loss {train_values['loss']:.4f} acc {train_values['accuracy']:.4f} | "
                  f"val loss {val_values['loss']:.4f} acc {val_values['accuracy']:.4f}", file=sys.stderr)
        if report is not None:
            report(epoch, value)
    return state["best_value"], state["best_epoch"]


def test_model(config, samples, checkpoint_file, run_id, reference, remake):
    """Evaluate a best checkpoint (of run_id) on the test set, each process its share of the images.
    Returns (test metrics with 'epoch', uint8 maps, uint8 norms, CSV header of the metrics); the arrays are
    complete on rank 0."""
    distributed.barrier()  # the checkpoint is complete on disk for every process
    device = get_device(config.cuda)
    layout = memory_format(config.channels_last, device)
    model, checkpoint = lifecycle.load_model_for_inference(config, checkpoint_file, run_id, reference, remake)
    model = prepare_model(model, device, layout)
    _, geometry, _ = data_config(config)
    test_loader = make_loader(local_share(samples["test"]), build_transform(geometry), config.val_batch_size,
                              config.num_workers, pin_memory(config))
    values, att_maps, norms = evaluate(model, test_loader, device, config.nll_weight, config.amp_eval, layout,
                                       collect_maps=True)
    header = ["accuracy", "loss", "sparsity"] + [f"accuracy_{name}" for name in aux_names(model)]
    return {**values, "epoch": checkpoint["epoch"]}, att_maps, norms, header


def checkpoint_bytes(config):
    """Disk a run needs for its checkpoints: the best weights and the resume state (weights and up to
    two optimiser moments), each written beside its previous version, plus a margin."""
    with torch.device("meta"):
        param_nb = sum(p.numel() for p in build_model(model_config(config, pretrained=False)).parameters())
    return 4 * param_nb * 8 + 16 * 2 ** 20

