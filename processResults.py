"""The tables, tests, plots and report of an experiment's saved sets: the seed's command, a shell over
brnpa.cli.results (python3 processResults.py --help says what it reads and writes).

    python3 processResults.py --exp_id CUB
"""
from brnpa.cli.results import build_parser, main  # noqa: F401  (build_parser: for the tests of its options)

if __name__ == "__main__":
    main()
