"""Two CPU kernels the demo spends much of its time in, ours against the plain torch call they replace:
the stem's max-pool (models.resnet.MaxPool2d, channels-last on the CPU) and the insertion blur
(metrics.perturbation.box_blur, two 1-D boxes). Both give the same result (the max-pool bit for bit, the blur
to float32 rounding: the largest difference is printed); this prints the median milliseconds of a call and
the ratio (ours / torch). The 448 px blur is timed once: the torch call takes seconds there.

    python3 -m bench.cpu_kernels [--repeats 20]

Shapes: the demo's stem output (batch 32, 16 channels, 64 x 64, conv1 stride 1) and the blur of one 64 px and
one 448 px image (the paper's size) with the 121-pixel box.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from brnpa.metrics.perturbation import BLUR_KERNEL, box_blur
from brnpa.models.resnet import MaxPool2d


def milliseconds(function, repeats):
    """The median time of one call over repeats calls (after one warm-up call): robust to the pauses of a
    shared machine."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def pool_forward_backward(pool, features, grad):
    def run():
        features.grad = None
        pool(features).backward(grad)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    opts = parser.parse_args()
    torch.manual_seed(0)
    features = torch.relu(torch.randn(32, 16, 64, 64)).requires_grad_()
    grad = torch.randn(32, 16, 32, 32)
    ours, plain = MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)
    rows = []
    with torch.no_grad():
        rows.append(("stem max-pool forward", milliseconds(lambda: ours(features), opts.repeats),
                     milliseconds(lambda: plain(features), opts.repeats), 0.0))
    rows.append(("stem max-pool forward+backward",
                 milliseconds(pool_forward_backward(ours, features, grad), opts.repeats),
                 milliseconds(pool_forward_backward(plain, features, grad), opts.repeats), 0.0))
    for side, repeats in ((64, opts.repeats), (448, 1)):
        image = torch.randn(1, 3, side, side)
        half = BLUR_KERNEL // 2
        two_d = lambda: F.avg_pool2d(image, BLUR_KERNEL, stride=1, padding=half, count_include_pad=True)  # noqa: E731
        difference = (box_blur(image) - two_d()).abs().max().item()
        rows.append((f"blur {side} px, {BLUR_KERNEL}-px box", milliseconds(lambda: box_blur(image), repeats),
                     milliseconds(two_d, repeats), difference))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'kernel':<34} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'max diff':>9}")
    for name, ours_ms, plain_ms, difference in rows:
        print(f"{name:<34} {ours_ms:9.2f} {plain_ms:9.2f} {ours_ms / plain_ms:6.3f} {difference:9.1e}")


if __name__ == "__main__":
    main()
