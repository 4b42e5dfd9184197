"""Train, validate and test one model, search its hyper-parameters, or run one perturbation task on it: the
seed's command, a shell over brnpa.cli.train (python3 trainVal.py --help lists every option).

    python3 trainVal.py -c config_cub.config --model_id br_npa_low_res --attention_metrics Del
"""
from brnpa.cli.train import main, run  # noqa: F401  (run: what the tests and scripts call in this process)

if __name__ == "__main__":
    main()
