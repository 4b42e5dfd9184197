#!/usr/bin/env bash
# The whole pipeline on the synthetic dataset, on CPU, in a few minutes:
# make the data (if missing), train cnn, b_cnn and br_npa_low_res, compute their
# DAUC / IAUC curves, draw their attention maps to pics/demo_attention.png and
# print the processResults table. Extra arguments go to every trainVal.py call.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONFIG=config_demo.config
MODELS="cnn b_cnn br_npa_low_res"
IMG_NB=60  # of the 120 test images, for DAUC and IAUC

if [ ! -d "$ROOT/data/synth_train" ] || [ ! -d "$ROOT/data/synth_test" ]; then
  python3 "$ROOT/data/synthetic.py"
fi
for model_id in $MODELS; do
  echo "== training $model_id"
  "$ROOT/train.sh" "$model_id" --optuna False --cuda False "$@"
done
for model_id in $MODELS; do
  echo "== DAUC / IAUC of $model_id ($IMG_NB test images)"
  "$ROOT/get_dauc_scores.sh" "$model_id" --att_metrics_img_nb "$IMG_NB" --cuda False "$@"
  "$ROOT/get_iauc_scores.sh" "$model_id" --att_metrics_img_nb "$IMG_NB" --cuda False "$@"
done
python3 "$ROOT/plot_maps.py" --exp_id demo --model_ids $MODELS --out pics/demo_attention.png
echo "== results"
python3 "$ROOT/processResults.py" --exp_id demo
