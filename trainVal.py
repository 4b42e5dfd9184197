"""Entry point: train, validate and test one model, search its hyper-parameters,
or compute its DAUC / IAUC curves.

    python trainVal.py -c config_cub.config --model_id br_npa_low_res --stride_lay3 2 --stride_lay4 2
    python trainVal.py -c config_cub.config --model_id br_npa_low_res --attention_metrics Del
"""
import os
import sys

import results_io
from args import parse_args, write_config
from load_data import DataError, load_samples
from models.resnet import WeightsDownloadError, imagenet_state_dict
from runtime import get_device
from training import default_hparams, load_teacher, test_model, train_model


def train_and_test(args, samples):
    """Plain run (--optuna False): train with the configured hyper-parameters, then test."""
    exp_folder = results_io.exp_dir(args)
    teacher = load_teacher(args, get_device(args)) if args.master_net else None
    os.makedirs(exp_folder, exist_ok=True)
    write_config(args, results_io.config_path(exp_folder, args.model_id))
    checkpoint_file = results_io.checkpoint_path(exp_folder, args.model_id)
    best_accuracy, best_epoch = train_model(args, samples, default_hparams(args), checkpoint_file,
                                            results_io.epoch_metrics_path(exp_folder, args.model_id),
                                            teacher=teacher)
    print(f"best validation accuracy {best_accuracy:.4f} at epoch {best_epoch}")
    test_values = test_model(args, samples, checkpoint_file)
    print(f"test accuracy {test_values['accuracy']:.4f}, sparsity {test_values['sparsity']:.4f} "
          f"-> {results_io.test_paths(exp_folder, args.model_id, best_epoch)['csv']}")


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.attention_metrics is not None:
            from attention_metrics import run_attention_metrics
            run_attention_metrics(args)
            return
        samples = load_samples(args)  # every data check runs before anything is written
        if args.pretrained:
            imagenet_state_dict(args.backbone, args.resnet_chan)  # download (or fail) before anything is written
        if args.optuna:
            from search import run_search
            run_search(args, samples)
        else:
            train_and_test(args, samples)
    except (DataError, FileNotFoundError, WeightsDownloadError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
