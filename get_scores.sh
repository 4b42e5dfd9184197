#!/usr/bin/env bash
# Any perturbation task of a trained model, named by its key (a curve of metrics/curves.py, or a task of
# metrics/tasks.py: python3 trainVal.py --help lists them under --attention_metrics):
#   ./get_scores.sh TASK MODEL_ID [trainVal.py options...]     e.g. ./get_scores.sh ROADMoRF cnn
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
if [ -z "${1:-}" ]; then
  echo "usage: $0 TASK MODEL_ID [trainVal.py options...]; the tasks are the choices of --attention_metrics" >&2
  exit 2
fi
run_model "$0 $1" "${2:-}" "${@:3}" --optuna False --attention_metrics "$1"
