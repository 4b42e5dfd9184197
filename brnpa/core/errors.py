"""The ground floor: the errors a user can fix, and the one way every entry point reports them.

Every entry point (trainVal.py, processResults.py, plot_maps.py, run_models.py, brnpa/data/synthetic.py,
brnpa/data/prepare_cub.py) runs its main through run_main: a UserError (or anything a full disk caused) ends
the program with one line, 'error: ...', and exit status 1; with --debug True the traceback is shown
instead.
"""
import contextlib
import errno
import sys


class UserError(Exception):
    """A problem the user can fix (bad option, missing or inconsistent file, full disk): printed as one
    line, 'error: ...', without a traceback (--debug True shows it)."""


class DiskFullError(UserError):
    """No space left where a result file was being written."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read (truncated, not a checkpoint) or does not fit the model."""


class DataError(UserError, ValueError):
    """A dataset folder that does not have the expected layout or content."""


class NotTrainedError(UserError):
    """The model has no finished run, or its files do not belong to one run."""


class LockedError(UserError):
    """Another live process holds a lock of the results folder."""


class WeightsDownloadError(UserError):
    """ImageNet weights were asked for (--pretrained True) and could not be downloaded."""


class SearchError(UserError):
    """The hyper-parameter search cannot go on (every trial fails, none completed)."""


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


# The errors of a file the system refuses to open or write: no permission, a read-only file system.
REFUSED_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def disk_full_as_user_error():
    """Turn any error caused by a full disk (an OSError, torch's or SQLite's message, optuna's assertion
    after a failed storage write) into DiskFullError, and a file the system refuses (no permission, a read-only
    folder) into a UserError naming it."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        if isinstance(error, OSError) and error.errno in REFUSED_ERRNOS:
            raise UserError(f"the system refuses access to {error.filename or 'a file'} ({error.strerror}): check the "
                            f"permissions of its folder (results must be writable: work on a copy of a read-only "
                            f"experiment in another --results_dir)") from error
        cause = disk_full_cause(error)
        if cause is None:
            raise
        raise DiskFullError(f"the disk is full ({type(cause).__name__}: {str(cause).splitlines()[0]}). Free some "
                            f"space and run the same command again: it resumes") from error


def run_main(work, debug, on_error=None):
    """Run work() as an entry point's task: a UserError becomes 'error: ...' on stderr and exit status 1, or
    its traceback when debug is True (--debug True, as the entry point parsed it). on_error, when given, is
    called first for any exception (to leave a process group, say)."""
    try:
        with disk_full_as_user_error():
            return work()
    except UserError as error:
        if on_error is not None:
            on_error()
        if debug:
            raise
        sys.exit(f"error: {error}")
    except BaseException:
        if on_error is not None:
            on_error()
        raise
