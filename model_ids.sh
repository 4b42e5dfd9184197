# The shell face of the table of model ids and the trainVal.py options each one adds to the config file
# (brnpa/core/model_ids.py, read through model_ids.py). Sourced by train.sh, the get_*_scores.sh scripts and
# paper_table.sh ($ROOT set).

# model_options MODEL_ID: its options (status 1 for an unknown id)
model_options() {
  python3 "$ROOT/model_ids.py" "$1"
}

# model_ids: the ids, one per line
model_ids() {
  python3 "$ROOT/model_ids.py"
}

# run_model SCRIPT_NAME MODEL_ID [EXTRA OPTIONS...]: run trainVal.py for a model id, or list the ids.
run_model() {
  local script="$1" model_id="$2"
  shift 2
  local options
  if [ -z "$model_id" ]; then
    echo "usage: $script MODEL_ID [trainVal.py options...]; MODEL_ID is one of: $(model_ids | paste -sd, - | sed 's/,/, /g')" >&2
    exit 2
  fi
  if ! options=$(model_options "$model_id"); then
    echo "error: unknown model id '${model_id}': one of $(model_ids | paste -sd, - | sed 's/,/, /g')" >&2
    exit 2
  fi
  # NPROC=N: N processes with torchrun (DistributedDataParallel), one per GPU; one process by default
  local launcher=(python3)
  if [ "${NPROC:-1}" != 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node "$NPROC")
  fi
  # shellcheck disable=SC2086  # options are words on purpose
  exec "${launcher[@]}" "$ROOT/trainVal.py" -c "${CONFIG:-config_cub.config}" --model_id "$model_id" $options "$@"
}
