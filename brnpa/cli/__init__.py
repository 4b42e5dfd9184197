"""The command line: `brnpa train ...` (what trainVal.py runs) and `brnpa results ...` (what processResults.py
runs), the console command that `pip install .` puts on the PATH."""
import sys

COMMANDS = {"train": "brnpa.cli.train", "results": "brnpa.cli.results"}


def main(argv=None):
    """brnpa COMMAND [options...]: the command's main with the rest of the arguments."""
    import importlib
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        given = f"got '{argv[0]}'" if argv else "got none"
        sys.exit(f"usage: brnpa COMMAND [options...]; COMMAND is one of: {', '.join(COMMANDS)} ({given}); "
                 f"brnpa COMMAND --help lists its options")
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
