"""Training, validation and test of one model (docs/METHOD.md, "Training" and "Test artifacts")."""
import contextlib
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import distributed
import results_io
import runs
from args import HPARAM_NAMES, load_run_config, run_differences, with_changes, write_config
from load_data import build_transform, make_loader, make_train_loader, set_loader_epoch
from metrics.attention import scale_to_uint8, sparsity
from models.net import AUX_SLICES, build_model
from runtime import (CheckpointError, UserError, autocast, get_device, load_checkpoint, memory_format,
                     prepare_model, progress, read_checkpoint, seed_everything, train_amp)

METRICS_HEADER = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def default_hparams(args):
    return {name: getattr(args, name) for name in HPARAM_NAMES}


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
    raise ValueError(f"optim must be one of SGD, Adam, AMSGrad, got '{optim}'")


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


def train_one_epoch(model, loader, optimizer, device, hparams, args, teacher=None):
    """One epoch. Each loader batch (hparams['batch_size'] images) is split into chunks of at most
    args.max_batch_size_single_pass images whose gradients accumulate into ONE optimiser step."""
    model.train()
    sums = MetricSums(device, aux_names(model))
    layout = memory_format(args, device)
    for images, target in progress(loader, desc="train"):
        images, target = to_device(images, target, device, layout)
        optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.split(args.max_batch_size_single_pass), target.split(args.max_batch_size_single_pass)))
        for chunk_index, (chunk_images, chunk_target) in enumerate(chunks):
            # several processes: gradients are averaged across them once, after the last chunk
            last_chunk = chunk_index == len(chunks) - 1
            sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last_chunk \
                else contextlib.nullcontext()
            with sync, autocast(device, train_amp(args, device)):
                result = model(chunk_images)
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(chunk_images)["output"]
                loss = compute_loss(result, chunk_target, args.nll_weight, teacher_logits,
                                    hparams["kl_interp"], hparams["kl_temp"])
            (loss * len(chunk_target) / len(target)).backward()
            sums.add(loss, result, chunk_target)
        optimizer.step()
    return sums.means()


@torch.no_grad()
def evaluate(model, loader, device, args, collect_maps=False):
    """Loss and accuracies on a loader; with collect_maps also the uint8 maps and norms
    (loader order) and the mean sparsity. float32 unless --amp_eval True (bf16 autocast).
    With several processes, each passes the loader of its share of the images: the metrics are
    reduced over all of them, and the maps and norms gathered in order."""
    model.eval()
    sums = MetricSums(device, aux_names(model))
    layout = memory_format(args, device)
    maps, norms, sparsities = [], [], []
    for images, target in progress(loader, desc="eval"):
        images, target = to_device(images, target, device, layout)
        with autocast(device, args.amp_eval):
            result = model(images)
            loss = compute_loss(result, target, args.nll_weight)
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


def load_teacher(args, device):
    """The frozen teacher --m_model_id: its finished run, rebuilt from its resolved config and best
    checkpoint, which must carry one run id."""
    exp_folder = results_io.exp_dir(args)
    try:
        landed = runs.LandedRun(exp_folder, args.m_model_id, args)
        checkpoint = landed.read_checkpoint()
    except UserError as error:
        raise type(error)(f"teacher model '{args.m_model_id}' is not ready: {error}") from None
    teacher = build_model(with_changes(landed.args, pretrained=False))
    teacher.load_state_dict(checkpoint["model"])
    teacher = prepare_model(teacher, device, args).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def build_train_loaders(args, samples, hparams):
    """(train loader, validation loader) with the run's hyper-parameters: validation sees the
    run's own crop ratio, like the test."""
    train_transform = build_transform(args, True, hparams["crop_ratio"], hparams["brightness"], hparams["saturation"])
    # several processes share the global batch: each takes its part of every batch (rounded up)
    process_batch = math.ceil(hparams["batch_size"] / distributed.world_size())
    train_loader = make_train_loader(samples["train"], train_transform, process_batch, args, distributed.rank(),
                                     distributed.world_size())
    val_loader = make_loader(local_share(samples["val"]), build_transform(args, False, hparams["crop_ratio"]),
                             args.val_batch_size, args)
    return train_loader, val_loader


def train_model(args, samples, hparams, files, run_id, report=None, teacher=None, resume=False):
    """Train with early stopping. Returns (best value of --metric_early_stop on validation, best epoch).

    hparams: the values of HPARAM_NAMES for this run. files: {'best': checkpoint of the best epoch,
    'metrics': per-epoch CSV, 'last': resume state written after every epoch, or None}. All writes
    are atomic and carry run_id. With resume and an existing files['last'], training continues
    after its epoch with the saved weights, optimiser, random state and early-stopping counters,
    so the result equals an uninterrupted run's. report(epoch, validation metric) is called after
    each epoch (a search uses it to prune).
    """
    seed_everything(args.seed)
    device = get_device(args)
    model = prepare_model(build_model(with_changes(args, dropout=hparams["dropout"])), device, args)
    if distributed.world_size() > 1:
        if args.sync_bn:
            model = distributed.sync_batchnorm(model, device)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model.parameters(), hparams["optim"], hparams["lr"], hparams["momentum"],
                                hparams["weight_decay"])
    train_loader, val_loader = build_train_loaders(args, samples, hparams)
    state = {"epoch": 0, "best_value": -math.inf, "best_epoch": None, "worse_epochs": 0, "rows": [],
             "finished": False}
    if resume and files["last"] is not None and os.path.exists(files["last"]):
        state = restore_last(files["last"], model, optimizer, run_id)
        if distributed.is_main():
            print(f"resuming '{args.model_id}' after epoch {state['epoch']} (run {run_id}, {files['last']}); "
                  f"--resume False starts over", file=sys.stderr)
    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        if state["finished"]:
            break
        start = time.time()
        lr = hparams["lr"] * lr_factor(epoch, hparams["use_scheduler"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        set_loader_epoch(train_loader, epoch)
        train_values = train_one_epoch(model, train_loader, optimizer, device, hparams, args, teacher)
        if not math.isfinite(train_values["loss"]):
            raise FloatingPointError(f"training loss is {train_values['loss']} at epoch {epoch}")
        val_values = evaluate(model, val_loader, device, args)
        value = val_values[args.metric_early_stop]
        improved = value > state["best_value"]
        if improved:
            state.update(best_value=value, best_epoch=epoch, worse_epochs=0)
        else:
            state["worse_epochs"] += 1
        state["rows"].append([epoch, train_values["loss"], train_values["accuracy"], val_values["loss"],
                              val_values["accuracy"], lr, round(time.time() - start, 2)])
        state.update(epoch=epoch, finished=state["worse_epochs"] >= args.max_worse_epoch_nb or epoch == args.epochs)
        if distributed.is_main():  # every process holds the same weights and values; one writes them
            if improved:
                results_io.atomic_save_torch(files["best"], {"model": unwrap(model).state_dict(), "epoch": epoch,
                                                             "val_accuracy": value, "hparams": hparams,
                                                             "run_id": run_id})
            results_io.atomic_write_csv(files["metrics"], METRICS_HEADER, state["rows"])
            if files["last"] is not None:
                save_last(files["last"], model, optimizer, state, run_id)
            print(f"epoch {epoch}: train loss {train_values['loss']:.4f} acc {train_values['accuracy']:.4f} | "
                  f"val loss {val_values['loss']:.4f} acc {val_values['accuracy']:.4f}", file=sys.stderr)
        if report is not None:
            report(epoch, value)
    return state["best_value"], state["best_epoch"]


def save_last(path, model, optimizer, state, run_id):
    """Everything a resumed run needs after this epoch, random states included."""
    results_io.atomic_save_torch(path, {
        "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "run_id": run_id, **state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})


def restore_last(path, model, optimizer, run_id):
    """Load a save_last checkpoint into model and optimiser, restore the random states; returns the state."""
    checkpoint = read_checkpoint(path, "; run with --resume False to start over")
    if checkpoint.get("run_id") != run_id:
        raise CheckpointError(f"{path} belongs to run {checkpoint.get('run_id')}, not {run_id}: run with "
                              f"--resume False to start over")
    unwrap(model).load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    return {key: checkpoint[key] for key in ("epoch", "best_value", "best_epoch", "worse_epochs", "rows",
                                             "finished")}


def test_model(args, samples, checkpoint_file, out_folder):
    """Evaluate a best checkpoint on the test set and write the test CSV (with the checkpoint's run id),
    maps and norms into out_folder (rank 0; each process evaluates its share of the images).
    Returns the test metrics (with 'epoch')."""
    distributed.barrier()  # the checkpoint is complete on disk for every process
    device = get_device(args)
    model = build_model(with_changes(args, pretrained=False))
    checkpoint = load_checkpoint(model, checkpoint_file)
    model = prepare_model(model, device, args)
    test_loader = make_loader(local_share(samples["test"]), build_transform(args, False), args.val_batch_size, args)
    values, att_maps, norms = evaluate(model, test_loader, device, args, collect_maps=True)
    if not distributed.is_main():
        return {**values, "epoch": checkpoint["epoch"]}
    paths = results_io.test_paths(out_folder, args.model_id, checkpoint["epoch"])
    results_io.atomic_save_npy(paths["att_maps"], att_maps)
    results_io.atomic_save_npy(paths["norm"], norms)
    header = ["accuracy", "loss", "sparsity"] + [f"accuracy_{name}" for name in aux_names(model)]
    results_io.atomic_write_csv(paths["csv"], header + ["run_id"],
                                [[values[name] for name in header] + [checkpoint["run_id"]]])
    return {**values, "epoch": checkpoint["epoch"]}


def checkpoint_bytes(args):
    """Disk a run needs for its checkpoints: the best weights and the resume state (weights and up to
    two optimiser moments), each written beside its previous version, plus a margin."""
    with torch.device("meta"):
        param_nb = sum(p.numel() for p in build_model(with_changes(args, pretrained=False)).parameters())
    return 4 * param_nb * 8 + 16 * 2 ** 20


def already_trained(exp_folder, args):
    """The model's landed run if it was a plain run with the same run-defining options, else None."""
    try:
        landed = runs.LandedRun(exp_folder, args.model_id, args)
    except runs.NotTrainedError:
        return None
    if "search_trial" in landed.metadata or run_differences(landed.args, args):
        return None
    return landed


def open_staging(staging, args):
    """(run id, resume) for a plain run in the staging folder: the staged run of the same command when it
    can resume, else a fresh folder with a new run id and the resolved options written first."""
    staged_config = results_io.config_path(staging, args.model_id)
    last_file = results_io.last_checkpoint_path(staging, args.model_id)
    if os.path.exists(last_file) and os.path.exists(staged_config):
        staged_args, metadata = load_run_config(staged_config)
        differences = run_differences(staged_args, args)
        if args.resume and not differences:
            return metadata["run_id"], True  # train_model reads the resume state and says from which epoch
        reason = "--resume False" if not differences else f"other values of {', '.join(differences)}"
        print(f"starting '{args.model_id}' over: the unfinished run in {staging} is discarded ({reason})",
              file=sys.stderr)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    run_id = runs.new_run_id()
    write_config(args, staged_config, run_id=run_id)
    return run_id, False


def train_and_test(args, samples):
    """A plain run (--optuna False): train with the configured hyper-parameters in the model's staging
    folder, test, and land the files as the model's. Resumes an interrupted run of the same command;
    does nothing when the model already has a finished run with the same options (unless --overwrite).
    With several processes, rank 0 holds the lock and decides; all of them train and test."""
    exp_folder = results_io.exp_dir(args)
    teacher = load_teacher(args, get_device(args)) if args.master_net else None
    if distributed.is_main():
        runs.check_results_folder(exp_folder, checkpoint_bytes(args))
    staging = runs.staging_folder(exp_folder, args.model_id)
    with distributed.main_only(runs.lock(exp_folder, args.model_id)):
        plan = distributed.broadcast(plan_plain_run(exp_folder, staging, args) if distributed.is_main() else None)
        if plan["done"] is not None:
            if distributed.is_main():
                print(f"'{args.model_id}' already has a finished run with these options (run {plan['done'][0]}): "
                      f"{plan['done'][1]}. --overwrite True trains it again.")
            return
        files = {"best": results_io.checkpoint_path(staging, args.model_id),
                 "metrics": results_io.epoch_metrics_path(staging, args.model_id),
                 "last": results_io.last_checkpoint_path(staging, args.model_id)}
        best_accuracy, best_epoch = train_model(args, samples, default_hparams(args), files, plan["run_id"],
                                                teacher=teacher, resume=plan["resume"])
        test_values = test_model(args, samples, files["best"], staging)
        if distributed.is_main():
            runs.land(exp_folder, args.model_id, staging)
            print(f"best validation accuracy {best_accuracy:.4f} at epoch {best_epoch}")
            print(f"test accuracy {test_values['accuracy']:.4f}, sparsity {test_values['sparsity']:.4f} "
                  f"-> {results_io.test_paths(exp_folder, args.model_id, best_epoch)['csv']}")


def plan_plain_run(exp_folder, staging, args):
    """Rank 0's decisions before a plain run: {'done': (run id, test CSV) of a finished run with the same
    options or None, 'run_id', 'resume'}. Finishes an interrupted landing first."""
    if runs.interrupted_landing(exp_folder, args.model_id):
        runs.finish_landing(exp_folder, args.model_id, staging)
        print(f"finished replacing the files of '{args.model_id}' by its last run", file=sys.stderr)
    done = already_trained(exp_folder, args)
    if done is not None and not args.overwrite:
        return {"done": (done.run_id, done.paths["csv"])}
    run_id, resume = open_staging(staging, args)
    return {"done": None, "run_id": run_id, "resume": resume}
