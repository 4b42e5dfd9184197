"""Command-line options and config files.

One source of defaults: the argparse defaults below, overridden by the config
file given with ``-c``, overridden by the command line. Config files are
``key = value`` lines (an optional ``[default]`` header; ``#`` starts a comment
at the start of a line or after a space, so a path may hold a ``#``); every
value goes through the same argparse type as on the command line, and an
unknown key is an error naming the file and the line. An option error is one
line on stderr, without the usage block.
"""
import argparse
import os
import re
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
# Hyper-parameters a search may change; a plain run takes them from the options.
HPARAM_NAMES = ("lr", "optim", "batch_size", "dropout", "weight_decay", "momentum", "use_scheduler",
                "brightness", "saturation", "crop_ratio", "kl_temp", "kl_interp")


def str2bool(value):
    """Parse the booleans written in the configs and scripts: True / False."""
    if isinstance(value, bool):
        return value
    if value in ("True", "true"):
        return True
    if value in ("False", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{value}'")


def optional_str(value):
    """A string, or None written as 'None'."""
    if value in (None, "None", ""):
        return None
    return value


def optional_int(value):
    """An int, or None written as 'None'."""
    if value in (None, "None", ""):
        return None
    return int(value)


# Post-hoc saliency methods of --att_metrics_post_hoc (metrics/saliency.py).
POST_HOC_METHODS = ("gradcam", "gradcampp", "xgradcam", "scorecam", "ablationcam", "eigencam", "rise")
# Keys of a resolved .ini that describe the run rather than set an option.
RUN_METADATA = ("run_id", "search_trial", "config")
# Options that do not change what a run computes: a rerun that differs only in these is the same run.
NOT_RUN_DEFINING = {"config", "results_dir", "data_dir", "num_workers", "cuda", "channels_last", "val_batch_size",
                    "debug", "resume", "overwrite", "attention_metrics", "att_metrics_img_nb",
                    "att_metrics_few_steps", "att_metrics_batch_size", "att_metrics_saliency",
                    "att_metrics_post_hoc", "rise_masks", "rise_grid", "rise_keep_prob",
                    "optuna_trial_nb", "optuna_storage", "optuna_heartbeat", "optuna_pruner"}
COMMENT = re.compile(r"(^|\s)#.*$")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports an error in one line instead of the whole usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (python3 {self.prog} --help lists the options)\n")


def build_parser():
    parser = OneLineParser(
        prog="trainVal.py", description="Train / evaluate BR-NPA, B-CNN and CNN models (see README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-c", "--config", type=str, default=None,
                        help="config file of 'key = value' lines; the command line overrides it")

    g = parser.add_argument_group("experiment and paths")
    g.add_argument("--exp_id", type=str, default="CUB", help="results go to <results_dir>/<exp_id>/")
    g.add_argument("--model_id", type=str, default="base", help="name of the model in every result file")
    g.add_argument("--results_dir", type=str, default=os.path.join(REPO_ROOT, "results"),
                   help="results root (relative paths are taken from the repo root)")
    g.add_argument("--data_dir", type=str, default=os.path.join(REPO_ROOT, "data"),
                   help="folder holding the dataset folders (relative paths are taken from the repo root)")
    g.add_argument("--seed", type=int, default=1, help="seed of weights init, split and sampling (authors: 1)")
    g.add_argument("--resume", type=str2bool, default=True,
                   help="continue an interrupted run of the same command from its last epoch (or image, for "
                        "DAUC / IAUC); False starts over")
    g.add_argument("--overwrite", type=str2bool, default=False,
                   help="train again a model whose finished run has the same options (False: say where its "
                        "results are and stop)")
    g.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")

    g = parser.add_argument_group("data")
    g.add_argument("--dataset_train", type=str, default="CUB-200-2011_train", help="train folder in data_dir")
    g.add_argument("--dataset_val", type=str, default="CUB-200-2011_train",
                   help="validation folder; equal to dataset_train means a seeded split of it")
    g.add_argument("--dataset_test", type=str, default="CUB-200-2011_test", help="test folder in data_dir")
    g.add_argument("--class_nb", type=int, default=200, help="number of classes (must match the folders)")
    g.add_argument("--train_prop", type=float, default=0.9,
                   help="share of the train folder used for training when it also validates")
    g.add_argument("--big_images", type=str2bool, default=True, help="448 px input (True) or 224 px (False)")
    g.add_argument("--img_size", type=optional_int, default=None,
                   help="input side in pixels; None means 448 or 224 from --big_images")
    g.add_argument("--sq_resizing", type=str2bool, default=True,
                   help="resize to a square before cropping (False: keep the aspect ratio)")
    g.add_argument("--crop_ratio", type=float, default=0.875, help="crop size / resize size")
    g.add_argument("--brightness", type=float, default=0.126, help="ColorJitter brightness (train)")
    g.add_argument("--saturation", type=float, default=0.5, help="ColorJitter saturation (train)")
    g.add_argument("--hflip", type=str2bool, default=True, help="random horizontal flip (train)")
    g.add_argument("--num_workers", type=int, default=4, help="data loader worker processes")

    g = parser.add_argument_group("model")
    g.add_argument("--backbone", type=str, default="resnet50",
                   choices=["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
    g.add_argument("--pretrained", type=str2bool, default=False, help="start from torchvision's ImageNet weights")
    g.add_argument("--resnet_chan", type=int, default=64, help="width of the first stage (64 = standard)")
    g.add_argument("--resnet_stride", type=int, default=2, help="stride of conv1")
    g.add_argument("--stride_lay2", type=int, default=2, help="stride of the first block of layer2")
    g.add_argument("--stride_lay3", type=int, default=1, help="stride of the first block of layer3")
    g.add_argument("--stride_lay4", type=int, default=1, help="stride of the first block of layer4")
    g.add_argument("--end_relu", type=str2bool, default=True, help="keep the ReLU ending the last block")
    g.add_argument("--attention", type=str2bool, default=True, help="attention head (False: plain CNN)")
    g.add_argument("--br_npa", type=str2bool, default=True, help="BR-NPA head (False: B-CNN head)")
    g.add_argument("--nb_att_maps", type=int, default=3, help="number K of attention maps / vectors")
    g.add_argument("--br_npa_randvec", type=str2bool, default=False, help="ablation: random picks")
    g.add_argument("--br_npa_norefine", type=str2bool, default=False, help="ablation: no refining")
    g.add_argument("--aux_on_masked", type=str2bool, default=False,
                   help="five auxiliary classifiers on v1, v2, v3, v1v2, v2v3 (K=3 only)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout before the last layer")
    g.add_argument("--lin_lay_bias", type=str2bool, default=False, help="bias in the last layer")

    g = parser.add_argument_group("training")
    g.add_argument("--optim", type=str, default="SGD", choices=["SGD", "Adam", "AMSGrad"])
    g.add_argument("--lr", type=float, default=0.001)
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight_decay", type=float, default=0.0)
    g.add_argument("--use_scheduler", type=str2bool, default=True, help="StepLR(step_size=2, gamma=0.9)")
    g.add_argument("--batch_size", type=int, default=12, help="images per optimiser step")
    g.add_argument("--max_batch_size_single_pass", type=int, default=12,
                   help="images per forward pass; larger batches use gradient accumulation")
    g.add_argument("--val_batch_size", type=int, default=32, help="batch size of validation / test")
    g.add_argument("--epochs", type=int, default=50, help="maximum number of epochs")
    g.add_argument("--max_worse_epoch_nb", type=int, default=10,
                   help="stop after this many epochs without validation gain")
    g.add_argument("--metric_early_stop", type=str, default="accuracy", choices=["accuracy"],
                   help="validation metric selecting the best epoch (maximised)")
    g.add_argument("--nll_weight", type=float, default=1.0, help="weight of the classification loss")
    g.add_argument("--master_net", type=str2bool, default=False, help="distil from the teacher --m_model_id")
    g.add_argument("--m_model_id", type=optional_str, default=None, help="teacher model id (same exp_id)")
    g.add_argument("--kl_interp", type=float, default=0.5, help="weight alpha of the KL term")
    g.add_argument("--kl_temp", type=float, default=1.0, help="distillation temperature T")

    g = parser.add_argument_group("device")
    g.add_argument("--cuda", type=str2bool, default=True, help="use the GPU when there is one")
    g.add_argument("--amp", type=str2bool, default=True, help="bf16 autocast for training (CUDA only)")
    g.add_argument("--amp_eval", type=str2bool, default=False,
                   help="bf16 autocast for validation, test and DAUC / IAUC (default float32, as the authors)")
    g.add_argument("--channels_last", type=str2bool, default=True, help="channels_last memory format (CUDA only)")
    g.add_argument("--sync_bn", type=str2bool, default=False,
                   help="with several processes (torchrun), BatchNorm statistics over the global batch "
                        "(SyncBatchNorm) instead of each process's share")

    g = parser.add_argument_group("hyper-parameter search")
    g.add_argument("--optuna", type=str2bool, default=False, help="run an optuna search")
    g.add_argument("--optuna_trial_nb", type=int, default=25, help="trials the study must complete")
    g.add_argument("--max_batch_size", type=int, default=12,
                   help="upper bound of the searched batch size (lower bound 12, or 4 when this is 12 or less); "
                        "train.sh passes the authors' 130 (60 for br_npa_high_res_distill)")
    g.add_argument("--opt_data_aug", type=str2bool, default=True, help="search the augmentation too")
    g.add_argument("--optuna_storage", type=optional_str, default=None,
                   help="optuna storage URL (default: sqlite <results>/<exp_id>/<model_id>_hypSearch.db)")
    g.add_argument("--optuna_pruner", type=str, default="none", choices=["none", "median"],
                   help="none: every trial runs to its end (the authors never pruned); median: stop a trial whose "
                        "validation accuracy is below the median of earlier trials (a deviation, opt-in)")
    g.add_argument("--optuna_heartbeat", type=int, default=30,
                   help="seconds between heartbeats; a trial silent for twice this is marked failed")

    g = parser.add_argument_group("DAUC / IAUC")
    g.add_argument("--attention_metrics", type=optional_str, default=None, choices=[None, "Del", "Add"],
                   help="compute the deletion (Del) or insertion (Add) curves instead of training")
    g.add_argument("--att_metrics_img_nb", type=int, default=100, help="test images evaluated (-1: all)")
    g.add_argument("--att_metrics_few_steps", type=str2bool, default=False, help="196 steps instead of h*w")
    g.add_argument("--att_metrics_batch_size", type=int, default=64, help="perturbed images per forward pass")
    g.add_argument("--att_metrics_post_hoc", type=optional_str, default=None,
                   choices=[None, *POST_HOC_METHODS],
                   help="curves of a post-hoc saliency of the model (pytorch-grad-cam's CAMs on the last stage, or "
                        "RISE) instead of its own maps; files attMetr<Del|Add>_<model_id>-<method>.npy")
    g.add_argument("--rise_masks", type=int, default=4000, help="RISE: number of random masks")
    g.add_argument("--rise_grid", type=int, default=7, help="RISE: side of the coarse grid of a mask")
    g.add_argument("--rise_keep_prob", type=float, default=0.5, help="RISE: probability of keeping a grid cell")
    g.add_argument("--att_metrics_saliency", type=str, default="float", choices=["float", "released"],
                   help="float: map x norm in floating point; released: the authors' released code's uint8 "
                        "arithmetic (the product wraps modulo 256), only to compare with numbers it produced")
    return parser


def read_config_file(path, parser, metadata=None):
    """Read a config file into {dest: typed value}. The run metadata of a resolved .ini
    (RUN_METADATA keys) goes to the dict `metadata` when one is given, and is skipped otherwise.

    Raises ValueError naming the file and line for a malformed line, an
    unknown key or a value the option's type rejects.
    """
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    values = {}
    with open(path) as file:
        for line_nb, raw_line in enumerate(file, start=1):
            line = COMMENT.sub("", raw_line).strip()
            if not line or (line.startswith("[") and line.endswith("]")):
                continue
            if "=" not in line:
                raise ValueError(f"{path}, line {line_nb}: expected 'key = value', got '{raw_line.strip()}'")
            key, value = (part.strip() for part in line.split("=", 1))
            if key in RUN_METADATA:
                if metadata is not None:
                    metadata[key] = value
                continue
            if key not in actions:
                raise ValueError(f"{path}, line {line_nb}: unknown key '{key}' "
                                 f"(python trainVal.py --help lists the options)")
            action = actions[key]
            try:
                typed = action.type(value) if action.type is not None else value
            except (argparse.ArgumentTypeError, ValueError) as error:
                raise ValueError(f"{path}, line {line_nb}: bad value for '{key}': {error}") from None
            if action.choices is not None and typed not in action.choices:
                raise ValueError(f"{path}, line {line_nb}: '{key}' must be one of "
                                 f"{', '.join(map(str, action.choices))}, got '{value}'")
            values[key] = typed
    return values


def resolve_path(path):
    """Relative paths are taken from the repo root, never from the working directory."""
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def parse_args(argv=None):
    """Parse argv (default sys.argv[1:]) on top of the config file it names."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    first_pass, _ = parser.parse_known_args(argv)
    if first_pass.config is not None:
        config_path = resolve_path(first_pass.config)
        if not os.path.isfile(config_path):
            parser.error(f"config file not found: {config_path}")
        try:
            parser.set_defaults(**read_config_file(config_path, parser))
        except ValueError as error:
            parser.error(str(error))
    args = parser.parse_args(argv)
    args.results_dir = resolve_path(args.results_dir)
    args.data_dir = resolve_path(args.data_dir)
    if args.img_size is None:
        args.img_size = 448 if args.big_images else 224
    check_args(args, parser)
    return args


# option: (test of its value, what the value must be)
RANGES = {
    "lr": (lambda v: v > 0, "a positive number"),
    "nb_att_maps": (lambda v: v >= 1, "at least 1"),
    "class_nb": (lambda v: v >= 2, "at least 2"),
    "epochs": (lambda v: v >= 1, "at least 1"),
    "max_worse_epoch_nb": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "max_batch_size_single_pass": (lambda v: v >= 1, "at least 1"),
    "val_batch_size": (lambda v: v >= 1, "at least 1"),
    "max_batch_size": (lambda v: v >= 1, "at least 1"),
    "optuna_trial_nb": (lambda v: v >= 1, "at least 1"),
    "optuna_heartbeat": (lambda v: v >= 1, "at least 1 (seconds)"),
    "num_workers": (lambda v: v >= 0, "0 or more"),
    "img_size": (lambda v: v is None or v >= 8, "at least 8 (pixels)"),
    "resnet_chan": (lambda v: v >= 1, "at least 1"),
    "resnet_stride": (lambda v: v >= 1, "at least 1"),
    "stride_lay2": (lambda v: v >= 1, "at least 1"),
    "stride_lay3": (lambda v: v >= 1, "at least 1"),
    "stride_lay4": (lambda v: v >= 1, "at least 1"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "momentum": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "crop_ratio": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "brightness": (lambda v: v >= 0, "0 or more"),
    "saturation": (lambda v: v >= 0, "0 or more"),
    "nll_weight": (lambda v: v > 0, "a positive number"),
    "kl_interp": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "kl_temp": (lambda v: v > 0, "a positive number"),
    "att_metrics_img_nb": (lambda v: v == -1 or v >= 1, "-1 (all test images) or at least 1"),
    "att_metrics_batch_size": (lambda v: v >= 1, "at least 1"),
    "rise_masks": (lambda v: v >= 1, "at least 1"),
    "rise_grid": (lambda v: v >= 1, "at least 1"),
    "rise_keep_prob": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def check_args(args, parser):
    """Out-of-range values and option combinations the code cannot honour are errors, not silent fallbacks."""
    for name, (valid, expected) in RANGES.items():
        if not valid(getattr(args, name)):
            parser.error(f"--{name} must be {expected}, got {getattr(args, name)}")
    if args.aux_on_masked and not (args.attention and args.br_npa and args.nb_att_maps == 3):
        parser.error("--aux_on_masked True needs the BR-NPA head with --nb_att_maps 3")
    if args.master_net and not args.m_model_id:
        parser.error("--master_net True needs --m_model_id (the teacher's model id)")
    if not 0 < args.train_prop < 1 and args.dataset_val == args.dataset_train:
        parser.error("--train_prop must be strictly between 0 and 1 when the train folder also validates")
    if args.pretrained and args.resnet_chan != 64:
        parser.error("--pretrained True needs --resnet_chan 64 (ImageNet weights have the standard width)")


def with_changes(args, **changes):
    """A copy of the options with some values changed (the run's own args are never mutated)."""
    return argparse.Namespace(**{**vars(args), **changes})


def write_config(args, path, **metadata):
    """Write the resolved configuration (and RUN_METADATA values, e.g. run_id) as a config file
    that read_config_file reads back."""
    from results_io import atomic_write

    if args.config is not None:
        metadata = {"config": args.config, **metadata}

    def write(tmp_path):
        with open(tmp_path, "w") as file:
            file.write("[default]\n")
            for key, value in sorted(metadata.items()):
                file.write(f"{key} = {value}\n")
            for key, value in sorted(vars(args).items()):
                if key != "config":
                    file.write(f"{key} = {value}\n")
    atomic_write(path, write)


def load_config(path):
    """Namespace of a resolved config written by write_config (used to rebuild a teacher)."""
    return load_run_config(path)[0]


def load_run_config(path):
    """(Namespace, run metadata dict) of a resolved config written by write_config."""
    parser = build_parser()
    metadata = {}
    parser.set_defaults(**read_config_file(path, parser, metadata))
    return parser.parse_args([]), metadata


def run_differences(first, second):
    """Names of the options that make two configurations different runs (NOT_RUN_DEFINING ignored)."""
    first, second = vars(first), vars(second)
    return sorted(key for key in set(first) | set(second)
                  if key not in NOT_RUN_DEFINING and first.get(key) != second.get(key))
