"""What flushing result files to the disk costs on the demo: the demo's pipeline (./demo.sh without the figure)
run twice into two fresh results folders, once as it is (every atomic write and landing fsyncs) and once with
files.sync_to_disk made a no-op. Prints the wall time of each, the number of fsyncs and the ratio.

    python3 -m bench.fsync_cost [--models cnn ...]
"""
import argparse
import os
import tempfile
import time

from brnpa.core import files
import run_models
from brnpa.core.options import REPO_ROOT


def run_demo(models, results_dir, vis_dir):
    start = time.perf_counter()
    run_models.main(["--models", *models, "--seeds", "1", "--exp_id", "demo", "--cuda", "False",
                     "--results_dir", results_dir, "--vis_dir", vis_dir])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["br_npa_low_res", "br_npa_high_res_distill", "b_cnn", "cnn"])
    opts = parser.parse_args()
    os.environ.setdefault("CONFIG", os.path.join(REPO_ROOT, "config_demo.config"))
    if not os.path.isdir(os.path.join(REPO_ROOT, "data", "synth_test")):
        from brnpa.data.synthetic import make_synthetic
        make_synthetic(os.path.join(REPO_ROOT, "data"))
    real_sync = files.sync_to_disk
    syncs = []

    def counted_sync(path):
        syncs.append(path)
        real_sync(path)

    rows = []
    with tempfile.TemporaryDirectory(prefix="fsync_bench_") as root:
        files.sync_to_disk = counted_sync
        rows.append(("with fsync", run_demo(opts.models, os.path.join(root, "a"), os.path.join(root, "vis_a")),
                     len(syncs)))
        files.sync_to_disk = lambda path: None
        rows.append(("without fsync", run_demo(opts.models, os.path.join(root, "b"), os.path.join(root, "vis_b")),
                     0))
    files.sync_to_disk = real_sync
    print(f"\n{'demo pipeline':<16}{'wall s':>9}{'fsyncs':>8}")
    for name, seconds, count in rows:
        print(f"{name:<16}{seconds:>9.1f}{count:>8}")
    print(f"ratio with / without: {rows[0][1] / rows[1][1]:.3f}")


if __name__ == "__main__":
    main()
