"""Time of `--help` of the two entry points users call most, in a fresh interpreter each time (what a user
waits for), and of `import torch` for scale.

    python3 -m bench.help_time [--repeats 5]

Prints the median and the range of the wall-clock times in seconds.
"""
import argparse
import statistics
import subprocess
import sys
import time

from brnpa.core.options import REPO_ROOT

COMMANDS = {
    "trainVal.py --help": [sys.executable, "trainVal.py", "--help"],
    "processResults.py --help": [sys.executable, "processResults.py", "--help"],
    "python3 -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall_times(command, repeats):
    """Wall-clock seconds of `repeats` runs of command from the repository root."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    repeats = parser.parse_args().repeats
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, command in COMMANDS.items():
        times = wall_times(command, repeats)
        print(f"{name:<28} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}")


if __name__ == "__main__":
    main()
