"""Names of the result files and atomic writes.

Everything lives in <results_dir>/<exp_id>/:
    <model_id>.ini                       resolved configuration of the run (and its run id)
    model<model_id>_best.pth             best checkpoint (by validation accuracy)
    model<model_id>_metrics.csv          per-epoch train / validation metrics
    model<model_id>_epoch<E>_test.csv    test accuracy, loss, sparsity, run id (E = best epoch)
    attMaps<model_id>_epoch<E>_test.npy  uint8 (N, M, h, w) test attention maps
    norm<model_id>_epoch<E>_test.npy     uint8 (N, 1, h, w) test feature norms
    <model_id>_hypSearch.db              optuna study (SQLite)
    attMetr<Del|Add>_<model_id>.npy      DAUC / IAUC curves, with _imgInds, _preds, _targets
                                         and a .json of metadata (run id, options) beside them
    attMetr<Del|Add>_<model_id>-<method>.npy   the same for a post-hoc saliency of the model, whose
    attMaps<model_id>-<method>_test.npy        float maps (and .json) of the evaluated images are kept
    .<model_id>.staging/                 the files of a run in progress (see runs.py)
    <model_id>.lock                      held by the process training the model

Every write goes to a temporary name first and is renamed into place; a full
disk raises DiskFullError and leaves no temporary file behind.
"""
import csv
import glob
import io
import json
import os
import re

import numpy as np
import torch

from runtime import DiskFullError, disk_full_cause


def exp_dir(args):
    return os.path.join(args.results_dir, args.exp_id)


def config_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}.ini")


def checkpoint_path(exp_folder, model_id, trial=None):
    suffix = "" if trial is None else f"_trial{trial}"
    return os.path.join(exp_folder, f"model{model_id}{suffix}_best.pth")


def last_checkpoint_path(folder, model_id):
    """The checkpoint written after every epoch, to resume from (kept in the run's staging folder)."""
    return os.path.join(folder, f"model{model_id}_last.pth")


def epoch_metrics_path(exp_folder, model_id, trial=None):
    suffix = "" if trial is None else f"_trial{trial}"
    return os.path.join(exp_folder, f"model{model_id}{suffix}_metrics.csv")


def test_paths(exp_folder, model_id, epoch):
    """{'csv', 'att_maps', 'norm'}: the seed README's test artifact names for a best epoch."""
    return {"csv": os.path.join(exp_folder, f"model{model_id}_epoch{epoch}_test.csv"),
            "att_maps": os.path.join(exp_folder, f"attMaps{model_id}_epoch{epoch}_test.npy"),
            "norm": os.path.join(exp_folder, f"norm{model_id}_epoch{epoch}_test.npy")}


def find_test_epochs(exp_folder, model_id):
    """Best epochs E for which model<model_id>_epoch<E>_test.csv exists."""
    pattern = re.compile(rf"model{re.escape(model_id)}_epoch(\d+)_test\.csv")
    paths = glob.glob(os.path.join(exp_folder, f"model{glob.escape(model_id)}_epoch*_test.csv"))
    names = (os.path.basename(p) for p in paths)
    return sorted(int(match.group(1)) for match in map(pattern.fullmatch, names) if match)


def latest_test_paths(exp_folder, model_id):
    """test_paths of the model's best epoch, or None if it has no test CSV."""
    epochs = find_test_epochs(exp_folder, model_id)
    return test_paths(exp_folder, model_id, epochs[-1]) if epochs else None


def study_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}_hypSearch.db")


def att_metrics_paths(exp_folder, source_id, metric):
    """{'curves', 'img_inds', 'preds', 'targets', 'meta', 'partial'} for metric 'Del' or 'Add'.
    source_id is a model id, or '<model_id>-<method>' for a post-hoc saliency of that model."""
    base = os.path.join(exp_folder, f"attMetr{metric}_{source_id}")
    return {"curves": base + ".npy", "img_inds": base + "_imgInds.npy",
            "preds": base + "_preds.npy", "targets": base + "_targets.npy", "meta": base + ".json",
            "partial": os.path.join(exp_folder, f".attMetr{metric}_{source_id}.partial.pth")}


def post_hoc_maps_paths(exp_folder, source_id):
    """Maps of a post-hoc source '<model_id>-<method>': float (N, h, w) for the evaluated images, and a .json
    with the run id, method options and test indices of the images they were computed for."""
    base = os.path.join(exp_folder, f"attMaps{source_id}_test")
    return {"maps": base + ".npy", "meta": base + ".json"}


def atomic_write(path, write):
    """write(temporary path) then rename to path. On any failure the temporary file is removed;
    a full disk becomes DiskFullError naming the file. The temporary name holds the process id, so
    two processes writing one file do not share it."""
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if disk_full_cause(error) is not None:
            raise DiskFullError(f"the disk is full: could not write {path}. Free some space and run the same "
                                f"command again (a training resumes from its last finished epoch)") from error
        raise


def atomic_save_npy(path, array):
    def write(tmp_path):
        with open(tmp_path, "wb") as file:
            np.save(file, array)
    atomic_write(path, write)


def atomic_save_torch(path, obj):
    """torch.save through a buffer, so that a full disk raises an OSError rather than torch's RuntimeError."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)

    def write(tmp_path):
        with open(tmp_path, "wb") as file:
            file.write(buffer.getbuffer())
    atomic_write(path, write)


def atomic_write_csv(path, header, rows):
    def write(tmp_path):
        with open(tmp_path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(rows)
    atomic_write(path, write)


def atomic_write_json(path, obj):
    def write(tmp_path):
        with open(tmp_path, "w") as file:
            json.dump(obj, file, indent=1)
    atomic_write(path, write)
