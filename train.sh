#!/usr/bin/env bash
# Train a model of the paper:  ./train.sh MODEL_ID [trainVal.py options...]
# e.g. ./train.sh br_npa_low_res     ./train.sh cnn --optuna False --epochs 5
# The config file is config_cub.config unless CONFIG names another (CONFIG=config_demo.config ./train.sh cnn).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
run_model "$0" "${1:-}" "${@:2}"
