"""Train several model ids and compute their metrics (DAUC, IAUC...), for one or more seeds, in one process.

    python3 run_models.py --models cnn b_cnn br_npa_low_res --seeds 3 [trainVal.py options...]

For each seed s (1..N) and each model id, in the order given, this does what
`./train.sh ID --optuna False --seed s --exp_id <exp_id with s>` then
`./get_dauc_scores.sh ID`, `./get_iauc_scores.sh ID` and `./get_single_step_scores.sh ID` (every
task of brnpa/metrics/tasks.py) would do, with the
options of the model id table (brnpa/core/model_ids.py) and the config file in CONFIG
(default config_demo.config). Everything resumes: a model whose finished
run has the same options is not trained again, and curves already computed
from it with the same options are not computed again. A teacher must come
before its student in --models (br_npa_low_res before br_npa_high_res_distill).
With --post_hoc_of ID --post_hoc METHOD..., the curves of those post-hoc saliencies of model ID are
computed too (--att_metrics_post_hoc).
At the end it prints the processResults table of the experiments (averaged
over seeds when there are several) and writes its HTML report. demo.sh and paper_table.sh are built on it.
"""
import argparse
import os
import time

from brnpa.core.errors import UserError, run_main
from brnpa.metrics.saliency import POST_HOC_NAMES
from brnpa.metrics.tasks import TASKS
from brnpa.core.model_ids import MODEL_IDS, model_options
from brnpa.core.options import HelpFormatter, str2bool


def table_options(model_id):
    """The trainVal.py options the model id table (brnpa/core/model_ids.py) gives a model id."""
    if model_id not in MODEL_IDS:
        raise UserError(f"unknown model id '{model_id}'; valid ids: {', '.join(MODEL_IDS)}")
    return model_options(model_id)


def call_trainval(argv):
    """trainVal.main in this process; an error stops the whole pipeline with its message."""
    import trainVal
    try:
        trainVal.main(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise  # its one line is printed already (an option error), or is the exit message


def main(argv=None):
    opts, extra = build_parser().parse_known_args(argv)
    run_main(lambda: run_all(opts, extra), opts.debug)


def build_parser():
    # no abbreviations: an unknown option goes to trainVal.py whole (--seed is not --seeds)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--models", nargs="+", required=True, help="model ids, a teacher before its student")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N, one experiment each")
    parser.add_argument("--exp_id", default="synth_s{seed}", help="experiment of each seed ({seed} is replaced)")
    parser.add_argument("--att_metrics_img_nb", type=int, default=-1, help="test images of the curves (-1: all)")
    parser.add_argument("--few_steps", default="True", choices=["True", "False"],
                        help="--att_metrics_few_steps of the curves (as many steps as a low-res map has cells)")
    parser.add_argument("--results_dir", default=None, help="results root (None: results/ of the repository)")
    parser.add_argument("--vis_dir", default=None,
                        help="where processResults puts its plots (None: vis/ of the repository)")
    parser.add_argument("--post_hoc_of", default=None, help="model id whose post-hoc saliencies get curves too")
    parser.add_argument("--post_hoc", nargs="*", default=[], choices=POST_HOC_NAMES,
                        help="post-hoc methods computed for --post_hoc_of (--att_metrics_post_hoc of each)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS),
                        help="the perturbation tasks computed for every model and post-hoc source")
    parser.add_argument("--figure", default=None,
                        help="also draw the models' maps on test images of the first seed to this PNG (plot_maps.py)")
    parser.add_argument("--debug", type=str2bool, default=False, help="show the traceback of an error")
    return parser


def run_all(opts, extra):
    """Train and compute the curves of every model and seed; extra: the options for trainVal.py."""
    if opts.seeds < 1:
        raise UserError("--seeds must be at least 1")
    if opts.post_hoc and opts.post_hoc_of not in opts.models:
        raise UserError("--post_hoc needs --post_hoc_of, one of the --models")
    if opts.seeds > 1 and "{seed}" not in opts.exp_id:
        raise UserError("with several seeds, --exp_id must hold {seed} (one experiment per seed)")
    if opts.debug:
        extra = ["--debug", "True"] + extra
    config = os.environ.get("CONFIG", "config_demo.config")
    table = {model_id: table_options(model_id) for model_id in opts.models}
    if opts.results_dir is not None:
        extra = ["--results_dir", opts.results_dir] + extra
    start = time.time()
    exp_ids = []
    for seed in range(1, opts.seeds + 1):
        exp_id = opts.exp_id.format(seed=seed)
        exp_ids.append(exp_id)
        for model_id in opts.models:
            common = ["-c", config, "--model_id", model_id, *table[model_id], "--optuna", "False",
                      "--seed", str(seed), "--exp_id", exp_id]
            print(f"== {exp_id}: {model_id} ({time.time() - start:.0f} s so far)", flush=True)
            call_trainval(common + extra)
            sources = [[]] + ([["--att_metrics_post_hoc", method] for method in opts.post_hoc]
                              if model_id == opts.post_hoc_of else [])
            for source in sources:
                for task_key in opts.tasks:
                    call_trainval(common + ["--attention_metrics", task_key, "--att_metrics_img_nb",
                                            str(opts.att_metrics_img_nb), "--att_metrics_few_steps", opts.few_steps]
                                  + source + extra)
    print(f"== all done in {time.time() - start:.0f} s", flush=True)
    if opts.figure is not None:
        import plot_maps
        plot_maps.main(["--exp_id", exp_ids[0], "--model_ids", *opts.models, "--out", opts.figure]
                       + (["--results_dir", opts.results_dir] if opts.results_dir else []))
    import processResults
    summary_argv = ["--exp_id", *exp_ids, "--report"] + (["--results_dir", opts.results_dir] if opts.results_dir
                                                        else []) + (["--vis_dir", opts.vis_dir] if opts.vis_dir else [])
    processResults.main(summary_argv)


if __name__ == "__main__":
    main()
