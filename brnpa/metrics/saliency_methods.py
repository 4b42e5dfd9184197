"""What the post-hoc saliency sources of brnpa/metrics/saliency.py compute: the CAMs of pytorch-grad-cam at the
feature-map resolution, RISE (batched, at pixel resolution), and the model's own maps as the authors' released
code saved them. Each function here returns a source, saliency(model, images, classes, indices) -> (B, h, w) on
the CPU, at the resolution its entry declares; the table of brnpa/metrics/saliency.py builds them."""
import contextlib
import io
import math

import torch
import torch.nn as nn

from brnpa.metrics.perturbation import released_saliency_map, released_uint8, saliencies_from_maps, topk_step_masks


def own_maps(att_maps, norms, head):
    """Source reading the saved uint8 arrays (saliencies_from_maps)."""
    def saliency(model, images, classes, indices):
        return torch.stack(saliencies_from_maps(att_maps, norms, head, indices))
    return saliency


class LogitsOnly(nn.Module):
    """The model seen by pytorch-grad-cam: images -> logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images)["output"]


def at_feature_resolution(cam_class):
    """A pytorch-grad-cam class whose maps stay at the target layer's size: the library resizes each map to
    the size get_target_width_height returns, which here is the feature map's own (so no resizing)."""
    class AtFeatureResolution(cam_class):
        def get_target_width_height(self, input_tensor):
            height, width = self.activations_and_grads.activations[0].shape[-2:]
            return width, height
    AtFeatureResolution.__name__ = f"{cam_class.__name__}AtFeatureResolution"
    return AtFeatureResolution


def cam_source(name, batch_size=64):
    """Source computing the pytorch-grad-cam method `name` (a key of CAM_CLASSES) on the last backbone stage,
    for the given classes; each map is ReLU'd and min-max scaled by the library. batch_size: forward passes of
    Score-CAM and Ablation-CAM (which loop over images inside the library). Called with gradients enabled (its
    entry says so)."""
    def saliency(model, images, classes, indices):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        cam_class = at_feature_resolution(cam_classes()[name])
        with cam_class(model=LogitsOnly(model), target_layers=[model.backbone.layer4]) as cam:
            cam.batch_size = batch_size
            # Score-CAM draws a progress bar per image on stderr: kept out of the run's own output
            with contextlib.redirect_stderr(io.StringIO()):
                maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
        model.eval()
        return torch.from_numpy(maps).float()
    return saliency


def cam_classes():
    """pytorch-grad-cam's classes by our method names (imported when used: the library is slow to import)."""
    from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM, XGradCAM
    return {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "scorecam": ScoreCAM,
            "ablationcam": AblationCAM, "eigencam": EigenCAM}


def rise_masks(mask_nb, grid, keep_prob, height, width, generator):
    """The random part of RISE, drawn at once so that it does not depend on batching: binary grids
    (mask_nb, 1, grid, grid) (a cell is kept with probability keep_prob) and the shifts (mask_nb,) in y and x."""
    grids = (torch.rand(mask_nb, 1, grid, grid, generator=generator) < keep_prob).float()
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    shift_y = torch.randint(0, cell_h, (mask_nb,), generator=generator)
    shift_x = torch.randint(0, cell_w, (mask_nb,), generator=generator)
    return grids, shift_y, shift_x


def mirrored_bilinear_weights(size_in, size_out, device=None):
    """(size_out, size_in) weights of a bilinear resize, pixel centres aligned (output pixel o reads input
    position (o + 0.5) size_in / size_out - 0.5), where a position beyond the border reads its mirror image
    about the border pixel (x1 | x0 x1 x2 ...). This is the border of the RISE reference's resize (its
    'reflect' mode); torch's bilinear interpolation clamps to the border pixel instead."""
    if size_in == 1:
        return torch.ones(size_out, 1, device=device)
    position = (torch.arange(size_out, dtype=torch.float64) + 0.5) * size_in / size_out - 0.5
    left = torch.floor(position)
    weight_right = position - left
    period = 2 * (size_in - 1)

    def mirror(index):
        index = index.long().remainder(period)
        return torch.where(index > size_in - 1, period - index, index)
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, mirror(left)), 1 - weight_right, accumulate=True)
    weights.index_put_((rows, mirror(left + 1)), weight_right, accumulate=True)
    return weights.float().to(device)


def upsample_masks(grids, shift_y, shift_x, height, width):
    """RISE masks (n, height, width) in [0, 1]: each grid (n, 1, g, g) upsampled bilinearly, with mirrored
    borders (mirrored_bilinear_weights), to (g + 1) cells of ceil(height / g) x ceil(width / g) pixels, then
    cropped at its shift."""
    grid = grids.shape[-1]
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    rows_weights = mirrored_bilinear_weights(grid, (grid + 1) * cell_h, grids.device)
    cols_weights = mirrored_bilinear_weights(grid, (grid + 1) * cell_w, grids.device)
    large = rows_weights @ grids[:, 0] @ cols_weights.T  # (n, (grid+1) cell_h, (grid+1) cell_w)
    rows = shift_y[:, None] + torch.arange(height, device=grids.device)[None]  # (n, height)
    cols = shift_x[:, None] + torch.arange(width, device=grids.device)[None]  # (n, width)
    index = torch.arange(len(grids), device=grids.device)[:, None, None]
    return large[index, rows[:, :, None], cols[:, None, :]]


def rise_saliency(scores_of, images, classes, grids, shift_y, shift_x, keep_prob, batch_size):
    """RISE: sum over masks of score(image * mask) * mask / (mask_nb * keep_prob), at pixel resolution.

    scores_of: (n, 3, H, W) -> (n, class_nb) softmax scores. images (B, 3, H, W); classes (B,);
    grids, shifts from rise_masks. Every forward pass holds batch_size masked copies (at least one mask
    per image), across masks and images. Returns (B, H, W).
    """
    image_nb, _, height, width = images.shape
    mask_nb = len(grids)
    total = torch.zeros(image_nb, height * width, device=images.device)
    masks_per_pass = max(1, batch_size // image_nb)
    class_index = torch.as_tensor(classes, device=images.device)
    for start in range(0, mask_nb, masks_per_pass):
        stop = min(start + masks_per_pass, mask_nb)
        masks = upsample_masks(grids[start:stop], shift_y[start:stop], shift_x[start:stop], height, width)
        masked = images[:, None] * masks[None, :, None]  # (B, n, 3, H, W)
        scores = scores_of(masked.flatten(0, 1)).view(image_nb, stop - start, -1)
        chosen = scores.gather(2, class_index.view(-1, 1, 1).expand(-1, stop - start, 1))[:, :, 0]  # (B, n)
        total += chosen @ masks.flatten(1)
    return (total / (mask_nb * keep_prob)).view(image_nb, height, width)


def rise_source(mask_nb=4000, grid=7, keep_prob=0.5, seed=0, batch_size=64):
    """Source computing RISE with a seeded generator (the same masks for every image and every run), at pixel
    resolution (B, H, W)."""
    @torch.no_grad()  # RISE needs no gradient; without this, every masked batch's graph would be kept
    def saliency(model, images, classes, indices):
        height, width = images.shape[-2:]
        grids, shift_y, shift_x = rise_masks(mask_nb, grid, keep_prob, height, width,
                                             torch.Generator().manual_seed(seed))
        grids, shift_y, shift_x = (t.to(images.device) for t in (grids, shift_y, shift_x))

        def scores_of(batch):
            return torch.softmax(model(batch)["output"].float(), dim=1)
        return rise_saliency(scores_of, images, classes, grids, shift_y, shift_x, keep_prob, batch_size).cpu()
    return saliency


@torch.no_grad()
def released_saved_arrays(model, batches, map_axis=True):
    """(att_maps, norms) uint8 as the authors' released test pass saved them for the model: every batch's
    maps and feature norms through released_uint8 (truncated; a map without map axis, map_axis False, is
    scaled over the whole batch). batches: the test images in test order, in the test pass's batches."""
    maps, norms = [], []
    for images in batches:
        result = model(images)
        att_maps = result["att_maps"] if map_axis else result["att_maps"][:, 0]
        maps.append(released_uint8(att_maps).cpu())
        norms.append(released_uint8(result["norm"]).cpu())
    return torch.cat(maps), torch.cat(norms)


def released_own_maps(test_images, head):
    """The own-maps source of --att_metrics_saliency released: the maps the released code would have saved
    (released_saved_arrays, computed from the model at the first call), its uint8 saliency arithmetic
    (released_saliency_map) and its order of the cells (topk_step_masks, as the saliency's .order)."""
    saved = {}

    def saliency(model, images, classes, indices):
        if not saved:
            saved["maps"], saved["norms"] = released_saved_arrays(model, test_images(),
                                                                  getattr(head, "released_map_axis", True))
        return torch.stack([released_saliency_map(saved["maps"][i], saved["norms"][i], head.combine_maps)
                            for i in indices])
    saliency.order = topk_step_masks
    return saliency
