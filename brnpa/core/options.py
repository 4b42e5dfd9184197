"""What one command-line option is, stated once: its type, default, help, valid range, whether it defines
the run (two runs differing in it are different runs) and whether a search may sample it.

brnpa/runs/args.py holds the table of trainVal.py's options; a saliency source of brnpa/metrics/saliency.py declares
its own options the same way, and brnpa/runs/args.py adds them to the table. This module also says where the
repository is (REPO_ROOT, resolve_path). It imports nothing of the project, so any layer may use it.
"""
import argparse
import dataclasses
import os
from typing import Any, Callable, Optional

# The repository's root: relative paths in options and config files are taken from here, never from the
# working directory.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # brnpa/core/ is two down


def resolve_path(path):
    """An absolute path as it is; a relative one taken from the repository root."""
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help of the entry points: the description as written, and every option's default after its help."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports an error in one line instead of the whole usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (python3 {self.prog} --help lists the options)\n")


def str2bool(value):
    """Parse the booleans written in the configs and scripts: True / False."""
    if isinstance(value, bool):
        return value
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


def optional_bool(value):
    """True / False as str2bool, or None written as 'None'."""
    return None if value in (None, "None") else str2bool(value)


def optional_str(value):
    """A string, or None written as 'None'."""
    if value in (None, "None", ""):
        return None
    return value


def optional_int(value):
    """An int, or None written as 'None'."""
    if value in (None, "None", ""):
        return None
    return int(value)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: --name, parsed by type, with its default and help.

    valid / expected: a test of the parsed value and what the value must be (for the error message; a function
    giving it where it is worked out when needed, see in_table).
    run_defining: False for options that do not change what a run computes (paths, device, workers,
    the DAUC / IAUC options): a rerun differing only in them is the same run.
    search: how a search trial samples the value (a SearchSpace), or None where a search keeps it.
    """
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str = ""
    choices: Optional[tuple] = None
    valid: Optional[Callable[[Any], bool]] = None
    expected: Any = ""
    run_defining: bool = True
    search: Optional["SearchSpace"] = None

    @property
    def searchable(self):
        return self.search is not None

    def check(self, value):
        """None if the value is in range, else the message saying what it must be."""
        if self.valid is None or self.valid(value):
            return None
        expected = self.expected() if callable(self.expected) else self.expected
        return f"--{self.name} must be {expected}, got {value}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The distribution a search samples an option from (docs/METHOD.md, "Search"), as optuna's suggest_float,
    suggest_int or suggest_categorical take it.

    kind: 'float', 'int' or 'categorical'. low, high: the bounds, or functions of the run's options for a bound
    that depends on them. step, log: as optuna's. choices: the values of a categorical. when: a function of
    (the run's options, the values sampled so far in this trial) saying whether the option is searched in
    this trial (None: always). rank: the option's place in the sampling order. The order matters: a seeded
    sampler draws its numbers in turn, so the same seed gives the released search's values only in the
    released order."""
    kind: str
    rank: int
    low: Any = None
    high: Any = None
    step: Optional[float] = None
    log: bool = False
    choices: Optional[tuple] = None
    when: Optional[Callable[[Any, dict], bool]] = None

    def bounds(self, options):
        """(low, high) for the run's options."""
        return tuple(bound(options) if callable(bound) else bound for bound in (self.low, self.high))


def at_least(low, unit=""):
    """(valid, expected) of an option that must be >= low."""
    return {"valid": lambda v: v >= low, "expected": f"at least {low}{unit}"}


def non_negative():
    return {"valid": lambda v: v >= 0, "expected": "0 or more"}


def positive():
    return {"valid": lambda v: v > 0, "expected": "a positive number"}


def positive_finite():
    """(valid, expected) of an option that must be a positive number, not inf or nan."""
    return {"valid": lambda v: 0 < v < float("inf"), "expected": "a positive finite number"}


def within(low, high, low_open=False, high_open=False):
    """(valid, expected) of an option in an interval."""
    def valid(v):
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return {"valid": valid, "expected": text}


def table_keys(module, table):
    """The keys of the table `table` of a module of the repository (module: 'brnpa.models.heads'), importing it."""
    import importlib
    return tuple(getattr(importlib.import_module(module), table))


def in_table(module, table):
    """(valid, expected) of an option whose value is None or a key of a table of the models/ modules, which
    import torch: the table is imported when a value is checked, after parsing, never for --help."""
    return {"valid": lambda value: value is None or value in table_keys(module, table),
            "expected": lambda: f"one of {', '.join(table_keys(module, table))} (the keys of {table} in "
                                f"{module.replace('.', '/')}.py)"}
