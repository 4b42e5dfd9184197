"""trainVal.py's option table and config files (args.py); a run's files: their names (results_io.py),
checkpoints (checkpoints.py), and the life of a run from its id to its landed files, with the commands that
remake them (lifecycle.py); and what the jobs share to run one: device, precision, progress and the run's model
and data configurations (runtime.py)."""
