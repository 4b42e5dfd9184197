# Model ids of the paper and the trainVal.py options each one adds to the config file
# (the searched batch-size maxima are the ones the authors' scripts pass).
# Sourced by train.sh, get_dauc_scores.sh and get_iauc_scores.sh.
LOW_RES="--stride_lay3 2 --stride_lay4 2"
HIGH_RES="--stride_lay3 1 --stride_lay4 1"

model_options() {
  case "$1" in
    br_npa_low_res)          echo "--attention True --br_npa True $LOW_RES --optuna True --max_batch_size 130" ;;
    br_npa_high_res_distill) echo "--attention True --br_npa True $HIGH_RES --master_net True --m_model_id br_npa_low_res --optuna True --max_batch_size 60" ;;
    b_cnn)                   echo "--attention True --br_npa False $LOW_RES --optuna True --max_batch_size 130" ;;
    cnn)                     echo "--attention False $LOW_RES --optuna True --max_batch_size 130" ;;
    br_npa_high_res_random_vectors_no_refining)
                             echo "--attention True --br_npa True $HIGH_RES --br_npa_randvec True --br_npa_norefine True --optuna False" ;;
    br_npa_high_res_random_vectors)
                             echo "--attention True --br_npa True $HIGH_RES --br_npa_randvec True --optuna False" ;;
    br_npa_high_res_no_refining)
                             echo "--attention True --br_npa True $HIGH_RES --br_npa_norefine True --optuna False" ;;
    br_npa_high_res_auxiliary_heads)
                             echo "--attention True --br_npa True $HIGH_RES --aux_on_masked True --optuna False" ;;
    *) return 1 ;;
  esac
}

MODEL_IDS="br_npa_low_res br_npa_high_res_distill b_cnn cnn br_npa_high_res_random_vectors_no_refining br_npa_high_res_random_vectors br_npa_high_res_no_refining br_npa_high_res_auxiliary_heads"

# run_model SCRIPT_NAME MODEL_ID [EXTRA OPTIONS...]: run trainVal.py for a model id, or list the ids.
run_model() {
  local script="$1" model_id="$2"
  shift 2
  local options
  if [ -z "$model_id" ] || ! options=$(model_options "$model_id"); then
    echo "usage: $script MODEL_ID [trainVal.py options...]" >&2
    echo "unknown model id '${model_id}'; valid ids:" >&2
    for id in $MODEL_IDS; do echo "  $id" >&2; done
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
