#!/usr/bin/env bash
# Sanity checks of a trained model's saliency (cascading model randomisation, class sensitivity):
#   ./get_sanity_scores.sh MODEL_ID [--att_metrics_post_hoc METHOD] [trainVal.py options...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
run_model "$0" "${1:-}" "${@:2}" --optuna False --attention_metrics Sanity
