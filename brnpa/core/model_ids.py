"""The model ids of the paper and the trainVal.py options each one adds to the config file, read by the
shell scripts (through model_ids.py and model_ids.sh), run_models.py and the commands that remake a model
(brnpa/runs/lifecycle.py). The searched batch-size maxima are the ones the authors' scripts pass.

Adding a model id (a new head, say) means adding one line to MODEL_IDS.
"""

LOW_RES = ["--stride_lay3", "2", "--stride_lay4", "2"]
HIGH_RES = ["--stride_lay3", "1", "--stride_lay4", "1"]
SEARCHED = ["--optuna", "True"]
NOT_SEARCHED = ["--optuna", "False"]
# the forward chunk the authors' ablation scripts pass (12 for the auxiliary heads): it sets the BatchNorm batches
ABLATION_CHUNK = ["--max_batch_size_single_pass", "9"]

MODEL_IDS = {
    "br_npa_low_res": ["--head", "br_npa", *LOW_RES, *SEARCHED, "--max_batch_size", "130"],
    "br_npa_high_res_distill": ["--head", "br_npa", *HIGH_RES, "--master_net", "True", "--m_model_id",
                                "br_npa_low_res", *SEARCHED, "--max_batch_size", "60"],
    "b_cnn": ["--head", "b_cnn", *LOW_RES, *SEARCHED, "--max_batch_size", "130"],
    "cnn": ["--head", "cnn", *LOW_RES, *SEARCHED, "--max_batch_size", "130"],
    "br_npa_high_res_random_vectors_no_refining": ["--head", "br_npa", *HIGH_RES, "--br_npa_randvec", "True",
                                                   "--br_npa_norefine", "True", *NOT_SEARCHED, *ABLATION_CHUNK],
    "br_npa_high_res_random_vectors": ["--head", "br_npa", *HIGH_RES, "--br_npa_randvec", "True", *NOT_SEARCHED,
                                       *ABLATION_CHUNK],
    "br_npa_high_res_no_refining": ["--head", "br_npa", *HIGH_RES, "--br_npa_norefine", "True", *NOT_SEARCHED,
                                    *ABLATION_CHUNK],
    "br_npa_high_res_auxiliary_heads": ["--head", "br_npa", *HIGH_RES, "--aux_on_masked", "True", *NOT_SEARCHED,
                                        "--max_batch_size_single_pass", "12"],
}


def model_options(model_id):
    """The trainVal.py options of a model id; KeyError naming the valid ids otherwise."""
    if model_id not in MODEL_IDS:
        raise KeyError(f"unknown model id '{model_id}'; valid ids: {', '.join(MODEL_IDS)}")
    return list(MODEL_IDS[model_id])
