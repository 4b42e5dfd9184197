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

from brnpa.core.options import (REPO_ROOT, OneLineParser, Option, SearchSpace, at_least, in_table, non_negative,
                                optional_bool, optional_int, optional_str, positive, resolve_path, str2bool, within)
from brnpa.metrics.saliency import POST_HOC_NAMES, SOURCES, is_post_hoc_method
from brnpa.metrics.tasks import TASKS


# Keys of a resolved .ini that describe the run rather than set an option.
RUN_METADATA = ("run_id", "search_trial", "config")
COMMENT = re.compile(r"(^|\s)#.*$")
# The optimisers of --optim (jobs/training.build_optimizer), in the search's order of its choices.
OPTIMISERS = ("Adam", "AMSGrad", "SGD")
# The pruners of --optuna_pruner (jobs/search.make_pruner).
PRUNERS = ("none", "median")
# The legacy encoding of the built-in heads by --attention / --br_npa: head -> (attention, br_npa).
LEGACY_HEAD_FLAGS = {"cnn": (False, True), "b_cnn": (True, False), "br_npa": (True, True)}
MODEL_ID = re.compile(r"[A-Za-z0-9_.]+")


def run_option(name, type, default, help="", **more):
    """An option that defines the run (the default)."""
    return Option(name, type, default, help, **more)


def setting(name, type, default, help="", **more):
    """An option that does not change what a run computes (paths, device, workers, the perturbation tasks)."""
    return Option(name, type, default, help, run_defining=False, **more)


def searched(name, type, default, help, space, **more):
    """A run-defining option a search trial replaces by a value drawn from space (a SearchSpace; brnpa/jobs/search.py
    samples it)."""
    return Option(name, type, default, help, search=space, **more)


def batch_size_floor(options):
    """Lower bound of the searched batch size: 12, or 4 when --max_batch_size is 12 or less (the authors' rule)."""
    return 12 if options.max_batch_size > 12 else 4


def sgd_trial(options, sampled):
    return sampled["optim"] == "SGD"


def scheduler_searched(options, sampled):
    """use_scheduler is sampled by SGD trials, unless --always_sched gives every trial the scheduler."""
    return sgd_trial(options, sampled) and not options.always_sched


def augmentation_searched(options, sampled):
    return options.opt_data_aug


def distillation_searched(options, sampled):
    return options.master_net


# (group title, options): every option of trainVal.py, stated once.
OPTION_GROUPS = [
    ("experiment and paths", [
        run_option("exp_id", str, "CUB", "results go to <results_dir>/<exp_id>/"),
        run_option("model_id", str, "base", "name of the model in every result file (letters, digits, '_', '.')"),
        setting("results_dir", str, os.path.join(REPO_ROOT, "results"),
                "results root (relative paths are taken from the repo root)"),
        setting("data_dir", str, os.path.join(REPO_ROOT, "data"),
                "folder holding the dataset folders (relative paths are taken from the repo root)"),
        run_option("seed", int, 1, "seed of weights init, split and sampling (authors: 1)",
                   **within(0, 2 ** 32 - 1)),
        setting("resume", str2bool, True, "continue an interrupted run of the same command from its last epoch "
                                          "(or image, for a perturbation task); False starts over"),
        setting("overwrite", str2bool, False, "train again a model whose finished run has the same options "
                                              "(False: say where its results are and stop)"),
        setting("debug", str2bool, False, "show the traceback of an error"),
        setting("progress_interval", float, 30.0,
                "seconds between two progress lines (images done, images/s, time left) when stderr is not a "
                "terminal, as in a batch job's log; a terminal shows progress bars", **positive()),
    ]),
    ("data", [
        run_option("dataset_train", str, "CUB-200-2011_train", "train folder in data_dir"),
        run_option("dataset_val", str, "CUB-200-2011_train",
                   "validation folder; equal to dataset_train means a seeded split of it"),
        run_option("dataset_test", str, "CUB-200-2011_test", "test folder in data_dir"),
        run_option("class_nb", int, 200, "number of classes (must match the folders)", **at_least(2)),
        run_option("train_prop", float, 0.9, "share of the train folder used for training when it also validates"),
        run_option("released_split", str2bool, False,
                   "the released code's split: unstratified, seeded 1 whatever --seed, and the train folder cut "
                   "to train_prop even when another folder validates (False: stratified, seeded by --seed)"),
        run_option("big_images", str2bool, True, "448 px input (True) or 224 px (False)"),
        run_option("img_size", optional_int, None, "input side in pixels; None means 448 or 224 from --big_images",
                   valid=lambda v: v is None or v >= 8, expected="at least 8 (pixels)"),
        run_option("sq_resizing", str2bool, True, "resize to a square before cropping (False: keep the aspect ratio)"),
        searched("crop_ratio", float, 0.875, "crop size / resize size",
                 SearchSpace("float", 9, 0.8, 1.0, step=0.05, when=augmentation_searched),
                 **within(0, 1, low_open=True)),
        searched("brightness", float, 0.126, "ColorJitter brightness (train)",
                 SearchSpace("float", 7, 0.0, 0.5, step=0.05, when=augmentation_searched), **non_negative()),
        searched("saturation", float, 0.5, "ColorJitter saturation (train)",
                 SearchSpace("float", 8, 0.0, 0.9, step=0.1, when=augmentation_searched), **non_negative()),
        run_option("hflip", str2bool, True, "random horizontal flip (train)"),
        setting("num_workers", int, 4, "data loader worker processes", **non_negative()),
    ]),
    ("model", [
        run_option("backbone", str, "resnet50",
                   "ResNet of the backbone, a key of ARCHITECTURES in brnpa/models/resnet.py",
                   **in_table("brnpa.models.resnet", "ARCHITECTURES")),
        run_option("pretrained", str2bool, False, "start from torchvision's ImageNet weights"),
        run_option("resnet_chan", int, 64, "width of the first stage (64 = standard)", **at_least(1)),
        run_option("resnet_stride", int, 2, "stride of conv1", **at_least(1)),
        run_option("stride_lay2", int, 2, "stride of the first block of layer2", **at_least(1)),
        run_option("stride_lay3", int, 1, "stride of the first block of layer3", **at_least(1)),
        run_option("stride_lay4", int, 1, "stride of the first block of layer4", **at_least(1)),
        run_option("end_relu", str2bool, True,
                   "keep the final ReLU of the blocks --end_relu_blocks names (docs/METHOD.md)"),
        run_option("end_relu_blocks", str, "last", choices=("last", "first"),
                   help="the blocks whose final ReLU --end_relu False removes: last, the last block of the last "
                        "stage; first, the first block of every stage, bottleneck blocks only (the authors' "
                        "models/resnet.py; its basic block always ends in a ReLU)"),
        run_option("padding_mode", str, "zeros", choices=("zeros", "circular"),
                   help="padding of the 3x3 convolutions: zeros (torchvision's ResNet) or circular (the authors' "
                        "models/resnet.py)"),
        run_option("pool_stride", optional_int, 2, "stride of the stem max-pool; None: --resnet_stride (the "
                                                   "authors' models/resnet.py)",
                   valid=lambda v: v is None or v >= 1, expected="None or at least 1"),
        run_option("head", optional_str, None,
                   help="attention head, a key of HEADS in brnpa/models/heads.py; None: the head that --attention and "
                        "--br_npa describe", **in_table("brnpa.models.heads", "HEADS")),
        run_option("attention", optional_bool, True,
                   "older way to choose a built-in head: attention head (False: plain CNN); --head wins when given, "
                   "and a head outside cnn, b_cnn and br_npa sets it to None"),
        run_option("br_npa", optional_bool, True,
                   "older way to choose a built-in head: BR-NPA head (False: B-CNN head); as --attention"),
        run_option("nb_att_maps", int, 3, "number K of attention maps / vectors", **at_least(1)),
        run_option("br_npa_randvec", str2bool, False, "ablation: random picks"),
        run_option("br_npa_norefine", str2bool, False, "ablation: no refining"),
        run_option("aux_on_masked", str2bool, False,
                   "five auxiliary classifiers on v1, v2, v3, v1v2, v2v3 (K=3 only)"),
        searched("dropout", float, 0.0, "dropout before the last layer", SearchSpace("float", 3, 0.0, 0.6, step=0.2),
                 **within(0, 1, high_open=True)),
        run_option("lin_lay_bias", str2bool, False, "bias in the last layer"),
    ]),
    ("training", [
        searched("optim", str, "SGD", "optimiser", SearchSpace("categorical", 1, choices=OPTIMISERS),
                 choices=OPTIMISERS),
        searched("lr", float, 0.001, "learning rate of the first epochs (see --use_scheduler)",
                 SearchSpace("float", 0, 1e-4, 1e-2, log=True), **positive()),
        searched("momentum", float, 0.9, "SGD momentum", SearchSpace("float", 5, 0.0, 0.9, step=0.1, when=sgd_trial),
                 **within(0, 1)),
        searched("weight_decay", float, 0.0, "weight decay of the optimiser",
                 SearchSpace("float", 4, 1e-6, 1e-3, log=True), **non_negative()),
        searched("use_scheduler", str2bool, True, "StepLR(step_size=2, gamma=0.9)",
                 SearchSpace("categorical", 6, choices=(True, False), when=scheduler_searched)),
        searched("batch_size", int, 12, "images per optimiser step",
                 SearchSpace("int", 2, batch_size_floor, lambda options: options.max_batch_size, log=True),
                 **at_least(1)),
        run_option("max_batch_size_single_pass", int, 12,
                   "images per forward pass; larger batches use gradient accumulation", **at_least(1)),
        run_option("released_batch_cut", str2bool, False,
                   "train on the images the authors' released loop trained on: loader batches of "
                   "max_batch_size_single_pass images gathered up to batch_size, the one that overflows cut "
                   "(its other images unseen); False trains on every image"),
        setting("val_batch_size", int, 32, "batch size of validation / test; -1: int(3.5 x --max_batch_size), the "
                                           "released code's rule (it decides the maps of --att_metrics_saliency "
                                           "released)", valid=lambda v: v == -1 or v >= 1,
                expected="-1 (the released rule) or at least 1"),
        run_option("epochs", int, 50, "maximum number of epochs", **at_least(1)),
        run_option("max_worse_epoch_nb", int, 10, "stop after this many epochs without validation gain",
                   **at_least(1)),
        run_option("metric_early_stop", str, "accuracy", "validation metric selecting the best epoch (maximised)",
                   choices=("accuracy",)),
        run_option("nll_weight", float, 1.0, "weight of the classification loss", **positive()),
        run_option("master_net", str2bool, False, "distil from the teacher --m_model_id"),
        run_option("m_model_id", optional_str, None, "teacher model id (same exp_id)"),
        searched("kl_interp", float, 0.5, "weight alpha of the KL term",
                 SearchSpace("float", 11, 0.1, 1.0, step=0.1, when=distillation_searched), **within(0, 1)),
        searched("kl_temp", float, 1.0, "distillation temperature T",
                 SearchSpace("float", 10, 1.0, 21.0, step=5.0, when=distillation_searched), **positive()),
    ]),
    ("device", [
        setting("cuda", str2bool, True, "use the GPU when there is one"),
        run_option("amp", str2bool, True, "bf16 autocast for training (CUDA only)"),
        run_option("amp_eval", str2bool, False,
                   "bf16 autocast for validation, test and the perturbation tasks (False: float32, as the authors)"),
        setting("channels_last", str2bool, True, "channels_last memory format (CUDA only)"),
        run_option("sync_bn", str2bool, False, "with several processes (torchrun), BatchNorm statistics over the "
                                               "global batch (SyncBatchNorm) instead of each process's share"),
    ]),
    ("hyper-parameter search", [
        run_option("optuna", str2bool, False, "run an optuna search"),
        setting("optuna_trial_nb", int, 25, "trials the study must complete", **at_least(1)),
        run_option("max_batch_size", int, 12,
                   "upper bound of the searched batch size (lower bound 12, or 4 when this is 12 or less); "
                   "train.sh passes the authors' 130 (60 for br_npa_high_res_distill)", **at_least(1)),
        run_option("opt_data_aug", str2bool, True, "search the augmentation too"),
        run_option("always_sched", str2bool, False,
                   "every search trial uses the scheduler, and SGD trials do not sample use_scheduler (the released "
                   "--always_sched); a plain run takes --use_scheduler"),
        setting("optuna_storage", optional_str, None,
                "optuna storage URL (default: sqlite <results>/<exp_id>/<model_id>_hypSearch.db)"),
        setting("optuna_pruner", str, "none", choices=PRUNERS,
                help="none: every trial runs to its end (the authors never pruned); median: stop a trial whose "
                     "validation accuracy is below the median of earlier trials (a deviation, opt-in)"),
        setting("optuna_heartbeat", int, 30, "seconds between heartbeats; a trial silent for twice this is marked "
                                             "failed", **at_least(1, " (seconds)")),
    ]),
    ("perturbation tasks: the DAUC, IAUC and ROAD curves, single-step scores, sanity checks (--attention_metrics)", [
        setting("attention_metrics", optional_str, None, choices=(None, *TASKS),
                help="compute a perturbation task's per-image results for a trained model instead of training: "
                     + ", ".join(f"{key} ({task.description})" for key, task in TASKS.items())),
        setting("att_metrics_img_nb", int, 100, "test images evaluated (-1: all)",
                valid=lambda v: v == -1 or v >= 1, expected="-1 (all test images) or at least 1"),
        setting("att_metrics_few_steps", str2bool, False,
                "as many steps as the low-res map of the same input has cells (196 at 448 px) instead of one "
                "cell per step"),
        setting("att_metrics_batch_size", int, 64, "perturbed images per forward pass", **at_least(1)),
        setting("att_metrics_post_hoc", optional_str, None,
                help="a perturbation task on a post-hoc saliency of the model instead of its own maps, one of: "
                     + "; ".join(f"{name} ({SOURCES[name].description})" for name in POST_HOC_NAMES)
                     + ". A method may carry a label, METHOD.LABEL (letters, digits, _): maps.mine names "
                       "precomputed maps, gradcam.a and gradcam.b keep two configurations apart. Files "
                       "attMetr<task>_<model_id>-<method>.npy",
                valid=lambda value: value is None or is_post_hoc_method(value),
                expected=f"one of {', '.join(repr(name) for name in POST_HOC_NAMES)}, optionally followed by .LABEL"),
    ]),
    ("saliency sources", [option for source in SOURCES.values() for option in source.options]),
    ("perturbation tasks", [option for task in TASKS.values() for option in task.options]),
]
OPTIONS = {option.name: option for _, group in OPTION_GROUPS for option in group}
# Hyper-parameters a search may change, in the order it samples them; a plain run takes them from the options.
SEARCHABLE = tuple(option.name for option in sorted((option for option in OPTIONS.values() if option.searchable),
                                                    key=lambda option: option.search.rank))
# Options that do not change what a run computes: a rerun that differs only in these is the same run.
NOT_RUN_DEFINING = {"config"} | {name for name, option in OPTIONS.items() if not option.run_defining}


def build_parser():
    parser = OneLineParser(
        prog="trainVal.py", description="Train / evaluate BR-NPA, B-CNN and CNN models (see README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    parser.add_argument("-c", "--config", type=str, default=None,
                        help="config file of 'key = value' lines; the command line overrides it")
    for title, group_options in OPTION_GROUPS:
        group = parser.add_argument_group(title)
        for option in group_options:
            group.add_argument(f"--{option.name}", type=option.type, default=option.default,
                               choices=list(option.choices) if option.choices is not None else None,
                               help=option.help)
    return parser


def read_config_file(path, parser, metadata=None):
    """Read a config file into {dest: typed value}. The run metadata of a resolved .ini
    (RUN_METADATA keys) goes to the dict `metadata` when one is given, and is skipped otherwise.

    Raises ValueError naming the file and line for a malformed line, an
    unknown key or a value the option's type rejects.
    """
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    values, lines = {}, {}
    with open(path, encoding="utf-8-sig") as file:  # a byte-order mark some editors write is not a key
        for line_nb, raw_line in enumerate(file, start=1):
            line = COMMENT.sub("", raw_line).strip()
            if not line or (line.startswith("[") and line.endswith("]")):
                continue
            if "=" not in line:
                raise ValueError(f"{path}, line {line_nb}: expected 'key = value', got '{raw_line.strip()}'")
            key, value = (part.strip() for part in line.split("=", 1))
            if key in lines:
                raise ValueError(f"{path}: '{key}' is set twice, on lines {lines[key]} and {line_nb}: keep one")
            lines[key] = line_nb
            if key in RUN_METADATA:
                if metadata is not None:
                    metadata[key] = value
                continue
            if key not in actions:
                raise ValueError(f"{path}, line {line_nb}: unknown key '{key}'")
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
    resolve_derived(args)
    check_args(args, parser)
    return args


def given_options(argv):
    """The names of the options written in argv (a command line parse_args accepted), not those that come from
    the config file or the defaults."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv))) - {"config"}


def legacy_head(attention, br_npa):
    """The head that --attention / --br_npa describe (LEGACY_HEAD_FLAGS read backwards; --br_npa counts only
    with --attention True, as in the released code)."""
    return next(head for head, (with_attention, with_br_npa) in LEGACY_HEAD_FLAGS.items()
                if bool(attention) == with_attention and (not attention or bool(br_npa) == with_br_npa))


def resolve_derived(args):
    """Fill the options whose default depends on others: img_size from big_images, a val_batch_size of -1 from
    max_batch_size (the released rule), and head from the legacy
    --attention / --br_npa (or, when --head is given, those two from the head, None for a head they cannot
    describe, so that the .ini is one consistent description)."""
    if args.img_size is None:
        args.img_size = 448 if args.big_images else 224
    if args.val_batch_size == -1:  # the released test loader's rule
        args.val_batch_size = int(args.max_batch_size * 3.5)
    if args.head is None:
        args.head = legacy_head(args.attention, args.br_npa)
    else:  # the pair describes the built-in heads only: None for any other
        args.attention, args.br_npa = LEGACY_HEAD_FLAGS.get(args.head, (None, None))
    return args


def check_args(args, parser):
    """Out-of-range values and option combinations the code cannot honour are errors, not silent fallbacks."""
    for option in OPTIONS.values():
        message = option.check(getattr(args, option.name))
        if message is not None:
            parser.error(message)
    if not MODEL_ID.fullmatch(args.model_id) or args.model_id.startswith("."):
        parser.error(f"--model_id may hold letters, digits, '_' and '.' (not first), got '{args.model_id}': "
                     f"'-' separates a model id from a post-hoc method in the result file names")
    if args.aux_on_masked and not (args.head == "br_npa" and args.nb_att_maps == 3):
        parser.error("--aux_on_masked True needs the BR-NPA head with --nb_att_maps 3")
    if args.master_net and not args.m_model_id:
        parser.error("--master_net True needs --m_model_id (the teacher's model id)")
    if not 0 < args.train_prop < 1 and (args.dataset_val == args.dataset_train or args.released_split):
        parser.error("--train_prop must be strictly between 0 and 1 when the train folder also validates")
    if args.pretrained and args.resnet_chan != 64:
        parser.error("--pretrained True needs --resnet_chan 64 (ImageNet weights have the standard width)")
    # options that would be recorded in the run's .ini while changing nothing it computes
    if args.always_sched and not args.optuna:
        parser.error("--always_sched True changes a search only (--optuna True); a plain run takes --use_scheduler: "
                     "drop it, or give --use_scheduler True")
    if not args.end_relu and args.end_relu_blocks == "first":
        from brnpa.models.resnet import ARCHITECTURES, Bottleneck
        if ARCHITECTURES[args.backbone][0] is not Bottleneck:
            parser.error(f"--end_relu False --end_relu_blocks first changes nothing on {args.backbone}: its basic "
                         f"blocks keep their final ReLU (as in the authors' code); use --end_relu_blocks last, or a "
                         f"bottleneck ResNet (resnet50 and deeper)")


def with_changes(args, **changes):
    """A copy of the options with some values changed (the run's own args are never mutated)."""
    return argparse.Namespace(**{**vars(args), **changes})


def write_config(args, path, **metadata):
    """Write the resolved configuration (and RUN_METADATA values, e.g. run_id) as a config file
    that read_config_file reads back."""
    from brnpa.core.files import atomic_write

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
    """Namespace of a resolved config written by write_config (its metadata dropped: load_run_config keeps it)."""
    return load_run_config(path)[0]


def load_run_config(path):
    """(Namespace, run metadata dict) of a resolved config written by write_config."""
    parser = build_parser()
    metadata = {}
    parser.set_defaults(**read_config_file(path, parser, metadata))
    return resolve_derived(parser.parse_args([])), metadata


def run_signature(options):
    """{name: value} of the options that define a run (NOT_RUN_DEFINING left out): two runs are the same run
    when their signatures are equal."""
    return {key: value for key, value in sorted(vars(options).items()) if key not in NOT_RUN_DEFINING}


def run_differences(first, second):
    """Names of the options that make two configurations different runs (NOT_RUN_DEFINING ignored)."""
    first, second = vars(first), vars(second)
    return sorted(key for key in set(first) | set(second)
                  if key not in NOT_RUN_DEFINING and first.get(key) != second.get(key))
