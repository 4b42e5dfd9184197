"""What every layer shares: the option types (options.py), the table of model ids (model_ids.py), the errors
users see (errors.py), atomic file writes (files.py) and the multi-process helpers (distributed.py)."""
