"""Training, validation and test of one model (docs/METHOD.md, "Training" and "Test artifacts")."""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

import results_io
from args import HPARAM_NAMES, load_config, with_changes
from load_data import build_transform, make_loader
from metrics.attention import scale_to_uint8, sparsity
from models.net import AUX_SLICES, build_model
from runtime import (autocast, get_device, load_checkpoint, memory_format, prepare_model, progress,
                     seed_everything, train_amp)


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
        self.loss = torch.zeros((), device=device)
        self.correct = {name: torch.zeros((), device=device, dtype=torch.long) for name in ("",) + tuple(aux_names)}
        self.count = 0

    def add(self, loss, result, target):
        self.loss += loss.detach().float() * len(target)
        self.correct[""] += (result["output"].argmax(dim=1) == target).sum()
        for name, logits in result.get("aux", {}).items():
            self.correct[name] += (logits.argmax(dim=1) == target).sum()
        self.count += len(target)

    def means(self):
        """{'loss', 'accuracy', 'accuracy_<aux>'} as floats (one host sync)."""
        values = {"loss": self.loss.item() / max(self.count, 1)}
        for name, correct in self.correct.items():
            values["accuracy" + (f"_{name}" if name else "")] = correct.item() / max(self.count, 1)
        return values


def aux_names(model):
    return tuple(AUX_SLICES) if getattr(model, "aux", None) is not None else ()


def train_one_epoch(model, loader, optimizer, device, hparams, args, teacher=None):
    """One epoch. Each loader batch (hparams['batch_size'] images) is split into chunks of at most
    args.max_batch_size_single_pass images whose gradients accumulate into ONE optimiser step."""
    model.train()
    sums = MetricSums(device, aux_names(model))
    layout = memory_format(args, device)
    for images, target in progress(loader, desc="train"):
        images, target = to_device(images, target, device, layout)
        optimizer.zero_grad(set_to_none=True)
        for chunk_images, chunk_target in zip(images.split(args.max_batch_size_single_pass),
                                              target.split(args.max_batch_size_single_pass)):
            with autocast(device, train_amp(args, device)):
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
    (loader order) and the mean sparsity. float32 unless --amp_eval True (bf16 autocast)."""
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
        values["sparsity"] = torch.cat(sparsities).mean().item()
        return values, torch.cat(maps).cpu().numpy(), torch.cat(norms).cpu().numpy()
    return values


def load_teacher(args, device):
    """The frozen teacher --m_model_id, rebuilt from its resolved config and best checkpoint."""
    exp_folder = results_io.exp_dir(args)
    teacher_config = results_io.config_path(exp_folder, args.m_model_id)
    teacher_checkpoint = results_io.checkpoint_path(exp_folder, args.m_model_id)
    for path in (teacher_config, teacher_checkpoint):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"teacher model '{args.m_model_id}' is not trained: {path} is missing.\n"
                f"Train it first, e.g. ./train.sh {args.m_model_id}")
    teacher_args = load_config(teacher_config)
    teacher = build_model(with_changes(teacher_args, pretrained=False))
    load_checkpoint(teacher, teacher_checkpoint)
    teacher = prepare_model(teacher, device, args).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def build_train_loaders(args, samples, hparams):
    """(train loader, validation loader) with the run's hyper-parameters: validation sees the
    run's own crop ratio, like the test."""
    train_transform = build_transform(args, True, hparams["crop_ratio"], hparams["brightness"], hparams["saturation"])
    train_loader = make_loader(samples["train"], train_transform, hparams["batch_size"], True, args, args.seed)
    val_loader = make_loader(samples["val"], build_transform(args, False, hparams["crop_ratio"]), args.val_batch_size,
                             False, args)
    return train_loader, val_loader


def train_model(args, samples, hparams, checkpoint_file, metrics_file, report=None, teacher=None):
    """Train with early stopping; the best epoch's weights go to checkpoint_file (atomic).

    hparams: the values of HPARAM_NAMES for this run. report(epoch, validation metric)
    is called after each epoch (a search uses it to prune). Returns (best value of
    --metric_early_stop on validation, best epoch).
    """
    seed_everything(args.seed)
    device = get_device(args)
    model = prepare_model(build_model(with_changes(args, dropout=hparams["dropout"])), device, args)
    optimizer = build_optimizer(model.parameters(), hparams["optim"], hparams["lr"], hparams["momentum"],
                                hparams["weight_decay"])
    train_loader, val_loader = build_train_loaders(args, samples, hparams)

    best_accuracy, best_epoch, worse_epochs, rows = -math.inf, None, 0, []
    header = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        lr = hparams["lr"] * lr_factor(epoch, hparams["use_scheduler"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_values = train_one_epoch(model, train_loader, optimizer, device, hparams, args, teacher)
        if not math.isfinite(train_values["loss"]):
            raise FloatingPointError(f"training loss is {train_values['loss']} at epoch {epoch}")
        val_values = evaluate(model, val_loader, device, args)
        rows.append([epoch, train_values["loss"], train_values["accuracy"], val_values["loss"],
                     val_values["accuracy"], lr, round(time.time() - start, 2)])
        results_io.atomic_write_csv(metrics_file, header, rows)
        print(f"epoch {epoch}: train loss {train_values['loss']:.4f} acc {train_values['accuracy']:.4f} | "
              f"val loss {val_values['loss']:.4f} acc {val_values['accuracy']:.4f}", file=sys.stderr)
        if val_values[args.metric_early_stop] > best_accuracy:
            best_accuracy, best_epoch, worse_epochs = val_values[args.metric_early_stop], epoch, 0
            results_io.atomic_save_torch(checkpoint_file, {"model": model.state_dict(), "epoch": epoch,
                                                           "val_accuracy": best_accuracy, "hparams": hparams})
        else:
            worse_epochs += 1
        if report is not None:
            report(epoch, val_values[args.metric_early_stop])
        if worse_epochs >= args.max_worse_epoch_nb:
            break
    return best_accuracy, best_epoch


def test_model(args, samples, checkpoint_file):
    """Evaluate the best checkpoint on the test set and write the seed README's artifacts.
    Returns the test metrics (with 'epoch')."""
    device = get_device(args)
    model = build_model(with_changes(args, pretrained=False))
    checkpoint = load_checkpoint(model, checkpoint_file)
    model = prepare_model(model, device, args)
    test_loader = make_loader(samples["test"], build_transform(args, False), args.val_batch_size, False, args)
    values, att_maps, norms = evaluate(model, test_loader, device, args, collect_maps=True)
    exp_folder = results_io.exp_dir(args)
    results_io.remove_test_artifacts(exp_folder, args.model_id)
    paths = results_io.test_paths(exp_folder, args.model_id, checkpoint["epoch"])
    results_io.atomic_save_npy(paths["att_maps"], att_maps)
    results_io.atomic_save_npy(paths["norm"], norms)
    header = ["accuracy", "loss", "sparsity"] + [f"accuracy_{name}" for name in aux_names(model)]
    results_io.atomic_write_csv(paths["csv"], header, [[values[name] for name in header]])
    return {**values, "epoch": checkpoint["epoch"]}
