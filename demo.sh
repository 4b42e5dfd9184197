#!/usr/bin/env bash
# The whole pipeline on the synthetic dataset, on the CPU, in a few minutes: make the data if it is
# missing, train cnn, b_cnn, br_npa_low_res and br_npa_high_res_distill (distilled from
# br_npa_low_res), compute their DAUC and IAUC on every test image (the high-res model with
# --att_metrics_few_steps: 16 steps of 16 cells), and the same for three floors of the CNN (random,
# center, edges: maps that know nothing of the model), their sanity checks, draw the maps to
# pics/demo_attention.png and print the processResults table. Extra arguments go to every trainVal.py call.
# A rerun does only what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONFIG="${CONFIG:-config_demo.config}"
if [ ! -d "$ROOT/data/synth_train" ] || [ ! -d "$ROOT/data/synth_test" ]; then
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 -m brnpa.data.synthetic
fi
exec python3 "$ROOT/run_models.py" --models br_npa_low_res br_npa_high_res_distill b_cnn cnn --seeds 1 \
  --exp_id demo --post_hoc_of cnn --post_hoc random center edges --figure pics/demo_attention.png --cuda False "$@"
