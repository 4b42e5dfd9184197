"""Atomic file writing, for every part that writes files (brnpa/data/, runs/, analysis/): a file is written to a
temporary name, flushed to the disk and renamed into place, so that a crash, an interrupt or a full disk never
leaves a half-written file under the real name, and a full disk raises DiskFullError naming the file."""
import csv
import io
import json
import os

import numpy as np

from brnpa.core.errors import DiskFullError, disk_full_cause


def atomic_write(path, write):
    """write(temporary path) then rename to path. The file's bytes and then its folder's entry are flushed to
    the disk (fsync) before and after the rename, so that a power cut after this returns cannot leave an
    empty or missing file. On any failure, an interrupt included, the temporary file is removed; a full disk
    becomes DiskFullError naming the file. The temporary name holds the process id, so two processes
    writing one file do not share it."""
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        write(tmp_path)
        sync_to_disk(tmp_path)
        os.replace(tmp_path, path)
        sync_to_disk(os.path.dirname(os.path.abspath(path)))
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if disk_full_cause(error) is not None:
            raise DiskFullError(f"the disk is full: could not write {path}. Free some space and run the same "
                                f"command again (a training resumes from its last finished epoch)") from error
        raise


def sync_to_disk(path):
    """fsync a file or a folder (a folder's fsync makes the names created or renamed in it durable)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(path, data):
    def write(tmp_path):
        with open(tmp_path, "wb") as file:
            file.write(data)
    atomic_write(path, write)


def atomic_save_npy(path, array):
    def write(tmp_path):
        with open(tmp_path, "wb") as file:
            np.save(file, array)
    atomic_write(path, write)


def atomic_save_torch(path, obj):
    """torch.save through a buffer, so that a full disk raises an OSError rather than torch's RuntimeError."""
    import torch  # here: writing the other kinds of files needs no torch (brnpa/data/synthetic.py)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


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
