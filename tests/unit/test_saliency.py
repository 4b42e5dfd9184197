"""Post-hoc saliency sources: pytorch-grad-cam's CAMs at the feature-map resolution and RISE (their rows
through the DAUC / IAUC pipeline are in tests/integration/test_post_hoc.py)."""
import torch
import torch.nn as nn

from helpers import tiny_model
from brnpa.metrics.saliency_methods import cam_source, rise_masks, rise_saliency, rise_source, upsample_masks


def test_gradcam_equals_hand_computation():
    """Gradient of the class logit w.r.t. the last features, spatially averaged as channel weights, weighted
    sum, ReLU; then min-max scaled per image as the library does."""
    torch.manual_seed(0)
    model = tiny_model(class_nb=3, resnet_stride=1, stride_lay3=1, stride_lay4=1).eval()  # 8x8 maps
    images, classes = torch.randn(3, 3, 32, 32), [2, 0, 1]
    features = model.backbone(images)
    features.retain_grad()
    logits = model.classifier(model.dropout(model.head(features, model.classifier)[0]))
    logits[torch.arange(3), classes].sum().backward()
    weights = features.grad.mean(dim=(2, 3))
    cam = torch.relu((weights[:, :, None, None] * features).sum(dim=1)).detach()
    low = cam.flatten(1).min(dim=1).values[:, None, None]
    expected = cam - low
    expected = expected / (1e-7 + expected.flatten(1).max(dim=1).values[:, None, None])
    maps = cam_source("gradcam")(model, images, classes, None)
    assert maps.shape == (3, 8, 8)
    assert torch.allclose(maps, expected, atol=1e-5)


class BlockModel(nn.Module):
    """Logit 0 = mean intensity of a fixed 8x8 block of the first channel (centred and scaled, so that the
    softmax score is not saturated); logit 1 = 0. Maps are 4x4."""

    def forward(self, images):
        block = images[:, 0, 8:16, 16:24].mean(dim=(1, 2))
        return {"output": torch.stack([8 * (block - 0.5), torch.zeros_like(block)], dim=1),
                "att_maps": torch.zeros(len(images), 1, 4, 4)}


def test_rise_is_seeded_and_finds_the_block():
    images = torch.ones(2, 3, 32, 32)
    source = rise_source(mask_nb=500, grid=4, keep_prob=0.5, seed=3, batch_size=64)
    first = source(BlockModel(), images, [0, 0], None)
    assert torch.equal(first, source(BlockModel(), images, [0, 0], None))
    assert first.shape == (2, 32, 32)  # pixel resolution
    # the block covers rows 8-15 and columns 16-23: cell (1, 2) of the 4x4 map the curves see
    cells = first.view(2, 4, 8, 4, 8).mean(dim=(2, 4))
    assert (cells.flatten(1).argmax(dim=1) == 1 * 4 + 2).all()
    other_seed = rise_source(mask_nb=500, grid=4, keep_prob=0.5, seed=4, batch_size=64)
    assert not torch.equal(first, other_seed(BlockModel(), images, [0, 0], None))


def test_rise_does_not_depend_on_batching():
    """Masks are drawn before batching: one mask per pass and 40 per pass give the same map."""
    generator = torch.Generator().manual_seed(0)
    grids, shift_y, shift_x = rise_masks(40, 4, 0.5, 16, 16, generator)
    images = torch.rand(2, 3, 16, 16)

    def scores_of(batch):
        return torch.softmax(torch.stack([batch.mean(dim=(1, 2, 3)), batch[:, 1, :4, :4].mean(dim=(1, 2))], 1), 1)
    one = rise_saliency(scores_of, images, [0, 1], grids, shift_y, shift_x, 0.5, 1)
    many = rise_saliency(scores_of, images, [0, 1], grids, shift_y, shift_x, 0.5, 80)
    assert torch.allclose(one, many, atol=1e-5)
    # by hand for image 0, class 0: sum_i score_i * mask_i / (N p)
    masks = upsample_masks(grids, shift_y, shift_x, 16, 16)
    scores = scores_of(images[:1] * masks[:, None])[:, 0]
    assert torch.allclose(one[0], (scores[:, None, None] * masks).sum(0) / (40 * 0.5), atol=1e-5)


