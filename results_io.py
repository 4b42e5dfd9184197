"""Names of the result files (the seed README's contract) and atomic writes.

Everything lives in <results_dir>/<exp_id>/:
    <model_id>.ini                       resolved configuration of the run
    model<model_id>_best.pth             best checkpoint (by validation accuracy)
    model<model_id>_metrics.csv          per-epoch train / validation metrics
    model<model_id>_epoch<E>_test.csv    test accuracy, loss, sparsity (E = best epoch)
    attMaps<model_id>_epoch<E>_test.npy  uint8 (N, M, h, w) test attention maps
    norm<model_id>_epoch<E>_test.npy     uint8 (N, 1, h, w) test feature norms
    <model_id>_hypSearch.db              optuna study (SQLite)
    attMetr<Del|Add>_<model_id>.npy      DAUC / IAUC curves
"""
import csv
import glob
import os
import re

import numpy as np
import torch


def exp_dir(args):
    return os.path.join(args.results_dir, args.exp_id)


def config_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}.ini")


def checkpoint_path(exp_folder, model_id, trial=None):
    suffix = "" if trial is None else f"_trial{trial}"
    return os.path.join(exp_folder, f"model{model_id}{suffix}_best.pth")


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


def remove_test_artifacts(exp_folder, model_id):
    """Delete earlier test artifacts of a model, so that exactly one set exists after a run."""
    for epoch in find_test_epochs(exp_folder, model_id):
        for path in test_paths(exp_folder, model_id, epoch).values():
            if os.path.exists(path):
                os.remove(path)


def study_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}_hypSearch.db")


def att_metrics_paths(exp_folder, model_id, metric):
    """{'curves', 'img_inds', 'preds', 'targets'} for metric 'Del' or 'Add'."""
    base = os.path.join(exp_folder, f"attMetr{metric}_{model_id}")
    return {"curves": base + ".npy", "img_inds": base + "_imgInds.npy",
            "preds": base + "_preds.npy", "targets": base + "_targets.npy"}


def atomic_save_npy(path, array):
    tmp_path = path + ".tmp.npy"
    np.save(tmp_path, array)
    os.replace(tmp_path, path)


def atomic_save_torch(path, obj):
    tmp_path = path + ".tmp"
    torch.save(obj, tmp_path)
    os.replace(tmp_path, path)


def atomic_write_csv(path, header, rows):
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp_path, path)


def read_csv_dicts(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))
