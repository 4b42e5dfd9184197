"""Entry point: train, validate and test one model, search its hyper-parameters,
or run one perturbation task on it (--attention_metrics: the DAUC, IAUC and ROAD curves, the single-step
scores, the sanity checks).

    python3 trainVal.py -c config_cub.config --model_id br_npa_low_res --stride_lay3 2 --stride_lay4 2
    python3 trainVal.py -c config_cub.config --model_id br_npa_low_res --attention_metrics Del

    torchrun --nproc_per_node 2 trainVal.py -c config_cub.config --model_id cnn ...   (several processes)

A problem the user can fix (an option, a data folder, a missing or inconsistent result file, a full
disk) ends the run with one line, 'error: ...', and exit status 1; --debug True shows the traceback.
"""
import sys

from brnpa.runs.args import given_options, parse_args
from brnpa.core.errors import run_main


def run(args, given=frozenset()):
    """The task the options ask for: a perturbation task (curves, single-step scores, sanity checks), a search,
    or a plain training run. given: the names of
    the options written on the command line (an evaluation refuses those the trained run fixes)."""
    from brnpa.runs import runtime
    from brnpa.data.load_data import load_samples
    from brnpa.models.resnet import imagenet_state_dict
    from brnpa.runs.runtime import data_config

    runtime.PROGRESS_INTERVAL["seconds"] = args.progress_interval

    if args.attention_metrics is not None:
        from brnpa.jobs.attention_metrics import run_attention_metrics
        run_attention_metrics(args, given)
        return
    samples = load_samples(data_config(args)[0])  # every data check runs before anything is written
    if args.pretrained:
        imagenet_state_dict(args.backbone, args.resnet_chan)  # download (or fail) before anything is written
    if args.optuna:
        from brnpa.jobs.search import run_search
        run_search(args, samples)
    else:
        from brnpa.jobs.train_task import train_and_test
        train_and_test(args, samples)


def run_in_group(args, given=frozenset()):
    """run(args, given), where a collective broken by another process's death (torchrun, several processes) is
    reported as such, in one line: the message of the collective itself says only that a connection closed."""
    from brnpa.core import distributed
    from brnpa.core.errors import UserError
    try:
        run(args, given)
    except RuntimeError as error:
        if distributed.world_size() == 1 or not distributed.is_peer_failure(error):
            raise
        raise UserError(f"another process of this torchrun run stopped ({distributed.failure_summary(error)}); run "
                        f"the same command again: it resumes from the last finished epoch") from error


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    from brnpa.core import distributed
    distributed.setup(args.cuda)  # several processes when started by torchrun
    given = given_options(argv)
    run_main(lambda: run_in_group(args, given), args.debug, on_error=lambda: distributed.teardown(succeeded=False))
    distributed.teardown()
