"""What the released loop's cut batches do to the ablation rows: each ablation id trained on the demo's
synthetic data with the authors' ablation batch (12 images, chunks of 9, so 9 + 3 of every 18 images are
trained on with --released_batch_cut True), for several seeds, with and without the cut. Prints the test
accuracy and the best epoch of every run, then the mean and the 95% t-interval over the seeds.

    python3 -m bench.released_batch_cut [--seeds 3] [--models ID ...]
"""
import argparse
import os
import tempfile

from brnpa.runs import results_io
from brnpa.runs import lifecycle
import trainVal
from brnpa.core.options import REPO_ROOT
from brnpa.core.model_ids import model_options
from brnpa.analysis.statistics import mean_ci

ABLATIONS = ["br_npa_high_res_no_refining", "br_npa_high_res_random_vectors",
             "br_npa_high_res_random_vectors_no_refining"]


def train(model_id, seed, cut, results_dir):
    exp_id = f"cut{int(cut)}_s{seed}"
    trainVal.main(["-c", os.path.join(REPO_ROOT, "config_demo.config"), "--model_id", model_id,
                   *model_options(model_id), "--batch_size", "12", "--seed", str(seed), "--released_batch_cut",
                   str(cut), "--exp_id", exp_id, "--results_dir", results_dir, "--cuda", "False"])
    landed = lifecycle.LandedRun(results_io.exp_dir(results_dir, exp_id), model_id)
    epoch = results_io.parse_test_csv_name(os.path.basename(landed.paths["csv"]))[1]
    return float(lifecycle.read_test_csv(landed.paths["csv"])["accuracy"]), epoch


def interval(values):
    return "{:.3f} ±{:.3f}".format(*mean_ci(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=ABLATIONS)
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="batch_cut_bench_") as results_dir:
        for model_id in opts.models:
            for cut in (False, True):
                for seed in range(1, opts.seeds + 1):
                    accuracy, epoch = train(model_id, seed, cut, results_dir)
                    rows.append((model_id, cut, seed, accuracy, epoch))
    print(f"\n{'model id':<45}{'cut':>6}{'seed':>5}{'test acc':>10}{'best epoch':>11}")
    for model_id, cut, seed, accuracy, epoch in rows:
        print(f"{model_id:<45}{str(cut):>6}{seed:>5}{accuracy:>10.3f}{epoch:>11}")
    print(f"\n{'model id':<45}{'cut':>6}{'test acc (95% t-interval)':>28}{'best epoch':>16}")
    for model_id in opts.models:
        for cut in (False, True):
            mine = [row for row in rows if row[0] == model_id and row[1] == cut]
            print(f"{model_id:<45}{str(cut):>6}{interval([r[3] for r in mine]):>28}"
                  f"{interval([r[4] for r in mine]):>16}")


if __name__ == "__main__":
    main()
