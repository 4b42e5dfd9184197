"""What the sanity task costs next to the curves: seconds per image of ./get_sanity_scores.sh and of
./get_dauc_scores.sh for a trained model's own maps and for Grad-CAM, on a copy of the demo's results (the
demo's files are not touched).

    python3 -m bench.sanity_cost [--model_id cnn] [--images 120]

Each task is run in this process through trainVal.main (--overwrite True, so every run computes, after one
untimed warm-up run); the
Grad-CAM maps are computed once by the first task that needs them and read back by the curves, so the
Grad-CAM sanity time is the sanity checks themselves (six randomised Grad-CAMs and one of another class per
image) and the Grad-CAM curve time includes computing the maps.
"""
import argparse
import os
import shutil
import tempfile
import time

import trainVal
from brnpa.core.options import REPO_ROOT
from brnpa.core.model_ids import model_options


def seconds(argv):
    start = time.perf_counter()
    trainVal.main(argv)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_id", default="cnn")
    parser.add_argument("--images", type=int, default=120, help="evaluated test images per task")
    parser.add_argument("--demo", default=os.path.join(REPO_ROOT, "results", "demo"),
                        help="the demo's results folder (./demo.sh makes it)")
    opts = parser.parse_args()
    if not os.path.isdir(opts.demo):
        raise SystemExit(f"no demo results in {opts.demo}: run ./demo.sh first")
    rows = []
    with tempfile.TemporaryDirectory() as results:
        shutil.copytree(opts.demo, os.path.join(results, "demo"))
        warm_up = True  # the first task pays for the imports and the first model load: run it once untimed
        for source in (None, "gradcam"):  # what the scripts pass, with the demo's config
            common = ["-c", os.path.join(REPO_ROOT, "config_demo.config"), *model_options(opts.model_id),
                      "--model_id", opts.model_id, "--optuna", "False", "--results_dir", results,
                      "--exp_id", "demo", "--cuda", "False",
                      "--att_metrics_img_nb", str(opts.images), "--overwrite", "True"]
            common += ["--att_metrics_post_hoc", source] if source else []
            if warm_up:
                seconds(common + ["--attention_metrics", "Del"])
                warm_up = False
            for task in ("Del", "Sanity"):
                rows.append((source or "own maps", task, seconds(common + ["--attention_metrics", task]) / opts.images))
    print(f"{'source':<10} {'task':<7} {'s per image':>12}")
    for source, task, per_image in rows:
        print(f"{source:<10} {task:<7} {per_image:12.3f}")
    for source in ("own maps", "gradcam"):
        curve, sanity = (per_image for s, _, per_image in rows if s == source)
        print(f"{source}: sanity / deletion curves = {sanity / curve:.2f}")


if __name__ == "__main__":
    main()
