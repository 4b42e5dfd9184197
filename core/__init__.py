"""The options and what every layer shares: the option types (options.py), trainVal.py's option table and
config files (args.py), the errors users see (errors.py), the device and data settings (runtime.py) and
the multi-process helpers (distributed.py)."""
