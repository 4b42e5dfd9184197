#!/usr/bin/env bash
# The paper's comparison on the synthetic dataset:  ./paper_table.sh [--seeds N] [trainVal.py options...]
# Trains every model id of brnpa/core/model_ids.py (eight: the four of the demo and four ablations) for seeds 1..N
# (default 3; experiment synth_s<seed> each), computes every task of brnpa/metrics/tasks.py (the curves DAUC, IAUC
# and ROAD, the single-step scores, the sanity checks) on every test image (high-res maps with
# --att_metrics_few_steps: as many steps as a low-res map has cells), and the same for twelve post-hoc
# explanations of the CNN (Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM, RISE with 1000 masks, the seven of
# captum's gradient family) and its three floors, and prints each row as mean and 95% interval over the seeds.
# A rerun does only what is missing. The config file is config_demo.config unless CONFIG names another.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/model_ids.sh"
export CONFIG="${CONFIG:-config_demo.config}"
if [ ! -d "$ROOT/data/synth_train" ] || [ ! -d "$ROOT/data/synth_test" ]; then
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 -m brnpa.data.synthetic
fi
# shellcheck disable=SC2086  # the ids are words on purpose
exec python3 "$ROOT/run_models.py" --models $(model_ids) --seeds 3 --exp_id "synth_s{seed}" \
  --post_hoc_of cnn --post_hoc gradcam gradcampp scorecam ablationcam rise gradient integratedgradients smoothgrad \
  guidedbackprop inputxgradient deeplift occlusion random center edges --rise_masks 1000 "$@"
