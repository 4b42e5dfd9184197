"""bf16 autocast against float32 (on the CPU here, on CUDA where there is one): stated tolerances."""
import torch

from helpers import tiny_model
from brnpa.metrics.curves import CURVE_METRICS
from brnpa.runs.runtime import autocast

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# bf16 keeps 8 bits of mantissa: softmax scores within 0.03, predictions agree on 90% of images.
SCORE_TOLERANCE = 0.03


def forward_fn(model, amp):
    """The forward of the curve task (attention_metrics): the project's autocast, on with --amp_eval True."""
    def forward(images):
        with autocast(torch.device(DEVICE), amp):
            return model(images)["output"].float()
    return forward


@torch.no_grad()
def test_bf16_curves_and_predictions_close_to_float32():
    torch.manual_seed(0)
    model = tiny_model(head="br_npa", class_nb=3).to(DEVICE).eval()
    images = torch.randn(40, 3, 32, 32, device=DEVICE)
    fp32, bf16 = forward_fn(model, False), forward_fn(model, True)
    agree = (fp32(images).argmax(1) == bf16(images).argmax(1)).float().mean().item()
    assert agree >= 0.9
    saliencies = [torch.rand(2, 2) for _ in range(4)]
    classes = fp32(images[:4]).argmax(1).tolist()
    largest = 0.0
    for metric in CURVE_METRICS.values():
        exact, approx = (metric.records(forward, list(images[:4]), saliencies, classes, 1, 3,
                                        image_seeds=[[0, i] for i in range(4)])["curves"] for forward in (fp32, bf16))
        for a, b in zip(exact, approx):
            assert torch.equal(a[:, 0], b[:, 0])
            assert (a[:, 1] - b[:, 1]).abs().max() <= SCORE_TOLERANCE
            largest = max(largest, (a[:, 1] - b[:, 1]).abs().max().item())
    assert largest > 0  # bf16 really ran: the scores moved
