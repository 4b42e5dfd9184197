#!/usr/bin/env bash
# Any perturbation task of a trained model, named by its key (a curve of brnpa/metrics/curves.py, or a task of
# brnpa/metrics/tasks.py: python3 trainVal.py --help lists them under --attention_metrics):
#   ./get_scores.sh TASK MODEL_ID [trainVal.py options...]     e.g. ./get_scores.sh ROADMoRF cnn
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
if [ -z "${1:-}" ]; then
  tasks=$(cd "$ROOT" && python3 -c 'from brnpa.metrics.tasks import TASKS; print(", ".join(TASKS))')
  echo "usage: $0 TASK MODEL_ID [trainVal.py options...]; TASK is one of: $tasks" >&2
  exit 2
fi
run_model "$0 $1" "${2:-}" "${@:3}" --optuna False --attention_metrics "$1"
