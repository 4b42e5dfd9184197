"""A run's files: their names and safe writing (results_io.py), checkpoints (checkpoints.py), and the life
of a run from its id to its landed files, with the commands that remake them (lifecycle.py)."""
