#!/usr/bin/env bash
# Single-step scores (AD, IIC, ADD) of a trained model:  ./get_single_step_scores.sh MODEL_ID [trainVal.py options...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
run_model "$0" "${1:-}" "${@:2}" --optuna False --attention_metrics Single
