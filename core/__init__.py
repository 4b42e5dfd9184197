"""The options and what every layer shares: the option types (options.py), trainVal.py's option table and
config files (args.py), the errors users see (errors.py), atomic file writes (files.py) and the multi-process
helpers (distributed.py)."""
