"""Perturbation curves (docs/METHOD.md, "DAUC and IAUC" and "ROAD") as small tensor functions.

A curve perturbs an image cell by cell in the order of its saliency and scores each perturbed copy.
Deletion starts from the image and replaces the chosen cells by a baseline; insertion starts from the
baseline and puts the chosen cells of the image back. A baseline is either a fixed image made from the
image (FIXED_BASELINES: the mean colour, the blurred image) or an imputer that fills the removed pixels
from the ones left (IMPUTERS: ROAD's noisy linear imputation). brnpa/metrics/curves.py lists the curves.
Besides the curve, perturbation_records keeps the start image's score and the saliency each step
perturbs, from which DC and IC are computed (brnpa/metrics/faithfulness.py).
"""
import math

import torch
import torch.nn.functional as F

BLUR_KERNEL = 121


def saliency_map(att_maps, norm, head):
    """Saliency of one image, min-max scaled to [0, 1], in floating point.

    att_maps: (M, h, w), norm: (1, h, w) (uint8 as saved, or float). head: the model's head class
    (models.heads), whose saliency(maps, norm) it is: for the built-in heads, the combined map (map 0 for
    BR-NPA and the CNN, the mean of the maps for B-CNN) times the norm. Returns (h, w) float32.
    """
    att_maps, norm = torch.as_tensor(att_maps).float(), torch.as_tensor(norm).float()
    return min_max(head.saliency(att_maps, norm))


def saliencies_from_maps(att_maps, norms, head, indices):
    """A model's own saliency (h, w) of the test images `indices`, from its saved arrays att_maps (N, M, h, w) and
    norms (N, 1, h, w), indexed by test index; head: its head class (models.heads), whose saliency rule
    saliency_map applies. The one place this is computed: the curve tasks (own_maps),
    processResults.py, plot_maps.py and the released-mode bench call it."""
    return [saliency_map(att_maps[i], norms[i], head) for i in indices]


def released_saliency_map(att_maps, norm, combine_maps):
    """The saliency as the authors' released code computes it from its saved uint8 arrays. att_maps: (M, h, w)
    uint8, or (h, w) for a map saved without its map axis (the released CNN's): the released indexing
    [i, 0:1] then takes its first row, which the product broadcasts over every row. norm: (1, h, w) uint8.
    The combined map is truncated to uint8 (this changes the B-CNN mean only) and the product is taken in
    uint8, so it wraps modulo 256 (200 * 200 gives 64); only the min-max scaling is done in floating point.
    Returns (h, w)."""
    att_maps, norm = torch.as_tensor(att_maps), torch.as_tensor(norm)
    if att_maps.dtype != torch.uint8 or norm.dtype != torch.uint8:
        raise ValueError("the 'released' saliency arithmetic needs the saved uint8 maps and norms")
    if att_maps.dim() == 2:
        att_maps = att_maps[0:1].expand_as(att_maps).unsqueeze(0)
    combined = combine_maps(att_maps.float()).to(torch.uint8)
    return min_max((combined * norm[0]).float())


def released_uint8(maps):
    """A batch of maps as the released code saved it: min-max scaled over the last three axes (per image for
    (B, M, h, w) maps, over the whole batch for (B, h, w) ones), times 255, truncated to uint8."""
    maps = maps.float()
    low = maps.amin(dim=(-1, -2, -3), keepdim=True)
    high = maps.amax(dim=(-1, -2, -3), keepdim=True)
    return ((maps - low) / (high - low) * 255).to(torch.uint8)


def min_max(saliency):
    """(saliency - min) / (max - min), 0 where the map is constant."""
    low, high = saliency.min(), saliency.max()
    return (saliency - low) / (high - low).clamp_min(1e-12)


def cells_per_step(map_height, map_width, step_nb=None):
    """Cells perturbed per step: 1 (h*w steps), or (h*w) / step_nb to make step_nb steps."""
    if step_nb is None:
        return 1
    cell_nb = map_height * map_width
    if cell_nb % step_nb != 0:
        raise ValueError(f"{step_nb} steps need h*w to be a multiple of {step_nb}, got {map_height}x{map_width} maps")
    return cell_nb // step_nb


def step_masks(saliency, cells_per_step):
    """Cells perturbed after each step, the most salient first (ties: lower index first).

    saliency: (h, w). Returns (T, h, w) bool with T = h*w / cells_per_step;
    masks[t] holds the (t+1) * cells_per_step highest cells.
    """
    height, width = saliency.shape
    order = torch.argsort(saliency.flatten(), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    step_nb = order.numel() // cells_per_step
    limits = (torch.arange(step_nb, device=order.device) + 1) * cells_per_step
    return (rank.unsqueeze(0) < limits.unsqueeze(1)).view(step_nb, height, width)


def topk_step_masks(saliency, cells_per_step):
    """The order of the authors' released code: at every step torch.topk picks the cells_per_step highest
    cells, and the picked cells are set below any saliency for the next steps (the released code set them to
    -1, below its saliencies in [0, 1]; -inf here, which picks the same cells and stays below a negated
    saliency, the least-salient-first order). The order among equal
    values is topk's, which may differ between devices: the released code ran it on CPU tensors (its maps were
    loaded on the CPU and never moved), so it runs on the CPU here too, whatever the saliency's device.
    saliency: (h, w). Returns (T, h, w) bool on the saliency's device, as step_masks."""
    height, width = saliency.shape
    current = saliency.detach().cpu().flatten().clone().float()
    picked = torch.zeros(current.numel(), dtype=torch.bool, device=current.device)
    masks, left = [], current.numel()
    while left > 0:
        indices = current.topk(k=cells_per_step).indices[:left]
        picked[indices] = True
        current[indices] = -math.inf
        masks.append(picked.clone())
        left -= cells_per_step
    return torch.stack(masks).view(len(masks), height, width).to(saliency.device)


def box_blur(images, kernel=BLUR_KERNEL):
    """kernel x kernel box filter, zero padding, per channel: each pixel becomes the mean of the kernel x kernel
    window around it, pixels outside the image counted as 0 (kernel odd). images: (B, 3, H, W).

    The 2-D box is a vertical 1-D box followed by a horizontal one: 2 * kernel additions per pixel instead of
    kernel ** 2 (16 to 30 times faster at the paper's 121 on a 2-core CPU: python3 -m bench.cpu_kernels), and
    closer to the exact mean in float32."""
    half = kernel // 2
    columns = F.avg_pool2d(images, (kernel, 1), stride=1, padding=(half, 0), count_include_pad=True)
    return F.avg_pool2d(columns, (1, kernel), stride=1, padding=(0, half), count_include_pad=True)


def mean_colour(image):
    """The baseline 0: the ImageNet mean colour once the image is normalised (not black). image: (3, H, W)."""
    return torch.zeros_like(image)


def blurred(image):
    """The baseline of the blurred image (box_blur). image: (3, H, W)."""
    return box_blur(image.unsqueeze(0))[0]


# The weights of ROAD's imputation: the 4 side neighbours 1/6 each, the 4 corner neighbours 1/12 each.
NEIGHBOUR_WEIGHTS = (((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
                     ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12))


def linear_imputation(image, removed, noise=0.0, rng=None):
    """ROAD's noisy linear imputation (Rong et al., ICML 2022): every removed pixel becomes the weighted mean of
    its neighbours inside the image (NEIGHBOUR_WEIGHTS, renormalised over those inside), the pixels left
    keeping their values; the equations of all removed pixels are solved together, one sparse system for the
    three channels, in float64. Then Gaussian noise of standard deviation `noise` (in normalised units) drawn
    from rng (a numpy Generator) is added to the removed pixels. Where every pixel is removed nothing is left
    to impute from: they become 0, the mean colour, plus the noise.

    image: (3, H, W) float; removed: (H, W) bool. Returns (3, H, W), the image's dtype and device."""
    import numpy as np
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve
    height, width = removed.shape
    is_removed = removed.detach().cpu().numpy().reshape(-1)
    unknown = np.flatnonzero(is_removed)
    filled = image.clone()
    if unknown.size == 0:
        return filled
    channels = image.shape[0]
    if unknown.size == is_removed.size:
        solution = np.zeros((unknown.size, channels))
    else:
        values = image.detach().cpu().double().numpy().reshape(channels, -1)
        unknown_number = np.full(is_removed.size, -1)
        unknown_number[unknown] = np.arange(unknown.size)
        rows, cols = np.divmod(unknown, width)
        diagonal, right_side = np.zeros(unknown.size), np.zeros((unknown.size, channels))
        entry_rows, entry_cols, entry_values = [np.arange(unknown.size)], [np.arange(unknown.size)], []
        for (row_step, col_step), weight in NEIGHBOUR_WEIGHTS:
            inside = ((rows + row_step >= 0) & (rows + row_step < height)
                      & (cols + col_step >= 0) & (cols + col_step < width))
            equations = np.flatnonzero(inside)
            neighbours = (rows[inside] + row_step) * width + cols[inside] + col_step
            diagonal[equations] += weight
            known = ~is_removed[neighbours]
            right_side[equations[known]] += weight * values[:, neighbours[known]].T
            entry_rows.append(equations[~known])
            entry_cols.append(unknown_number[neighbours[~known]])
            entry_values.append(np.full(int((~known).sum()), -weight))
        matrix = csc_matrix((np.concatenate([diagonal] + entry_values),
                             (np.concatenate(entry_rows), np.concatenate(entry_cols))),
                            shape=(unknown.size, unknown.size))
        solution = spsolve(matrix, right_side).reshape(unknown.size, channels)
    if noise:
        solution = solution + noise * rng.standard_normal(solution.shape)
    flat = filled.view(channels, -1)
    flat[:, torch.from_numpy(unknown).to(flat.device)] = torch.from_numpy(solution.T).to(flat)
    return filled


# Baselines: name -> image (3, H, W) -> the image a removed cell shows (brnpa/metrics/curves.py names them).
FIXED_BASELINES = {"mean": mean_colour, "blur": blurred}
# Imputers: name -> (image (3, H, W), removed pixels (H, W) bool, noise, rng) -> the imputed image.
IMPUTERS = {"linear": linear_imputation}


def cell_pixels(masks, size):
    """Cell masks (T, h, w) bool as pixel masks (T, H, W) bool of size (H, W), each cell a block of pixels."""
    return F.interpolate(masks.unsqueeze(1).float(), size=size, mode="nearest")[:, 0] > 0.5


def copies_maker(image, baseline, insertion, noise=0.0, rng=None):
    """What a curve scores, for one image: a function of masks (T, h, w) bool (the cells perturbed after each
    step) returning the perturbed copies (T, 3, H, W). Deletion (insertion False): the image with the masked
    cells removed; insertion: the baseline with the masked cells of the image put back. baseline: a name of
    FIXED_BASELINES (made once per image) or of IMPUTERS (which fill the removed pixels of every copy, with
    `noise` drawn from rng). image: (3, H, W)."""
    if baseline in FIXED_BASELINES:
        fixed = FIXED_BASELINES[baseline](image)
        start, chosen = (fixed, image) if insertion else (image, fixed)
        return lambda masks: blend(start, chosen, masks)
    if baseline not in IMPUTERS:
        raise ValueError(f"unknown baseline '{baseline}': one of {', '.join([*FIXED_BASELINES, *IMPUTERS])}")
    impute = IMPUTERS[baseline]

    def copies(masks):
        removed = cell_pixels(masks, image.shape[-2:])
        return torch.stack([impute(image, ~mask if insertion else mask, noise, rng) for mask in removed])
    return copies


def blend(start, chosen, masks):
    """Perturbed copies: chosen where the cell mask is set, start elsewhere.

    start, chosen: (3, H, W); masks: (T, h, w) bool, each cell a block of pixels.
    Returns (T, 3, H, W).
    """
    pixel_masks = cell_pixels(masks, start.shape[-2:]).unsqueeze(1).to(start.dtype)
    return start.unsqueeze(0) * (1 - pixel_masks) + chosen.unsqueeze(0) * pixel_masks


def perturbation_records(forward, images, saliencies, classes, copies, cells_per_step, batch_size,
                         order=step_masks, least_first=False, cell_counts=None):
    """What a curve task saves of many images, filling each forward pass with up to batch_size perturbed
    copies, across steps and images.

    forward: (B, 3, H, W) -> (B, class_nb) logits. images: sequence of (3, H, W)
    (read lazily, in order); saliencies: sequence of (h, w); classes: the class
    predicted on each clean image; copies: (position of the image, image) -> a function of step masks
    (T, h, w) -> perturbed copies (T, 3, H, W), e.g. copies_maker's; order: saliency -> step masks (step_masks,
    or topk_step_masks for the released code's order), applied to -saliency where least_first (the least
    salient cells first); cell_counts: cell number -> the cells perturbed after each step, cumulated, for
    steps of unequal size, or None (cell_counts itself None, or its value) for cells_per_step cells per step.
    Returns {'curves': list of (T, 2) tensors, per step (cells left, softmax score of the class after the
    step); 'start_scores': list of () tensors, the score of the start image (the clean image for deletion, the
    baseline for insertion; not a point of the curve); 'step_saliency': list of (T,) tensors, the saliency
    summed over the cells each step perturbs}.
    """
    scores, masses, lefts, buffer, owners = [], [], [], [], []
    filled = 0

    def flush():
        probabilities = torch.softmax(forward(torch.cat(buffer)).float(), dim=1)
        offset = 0
        for image_index, start, stop in owners:
            rows = probabilities[offset:offset + stop - start, classes[image_index]]
            scores[image_index][start:stop] = rows.to(scores[image_index].device)
            offset += stop - start
        buffer.clear()
        owners.clear()

    for image_index, (image, saliency) in enumerate(zip(images, saliencies)):
        saliency = saliency.to(image.device)
        ranking = -saliency if least_first else saliency
        counts = None if cell_counts is None else cell_counts(saliency.numel())
        if counts is None:
            masks = order(ranking, cells_per_step)
            counts = (torch.arange(masks.shape[0]) + 1) * cells_per_step
        else:
            counts = torch.as_tensor(counts)
            masks = order(ranking, 1)[(counts - 1).to(saliency.device)]
        lefts.append(saliency.numel() - counts)
        nothing = torch.zeros_like(masks[:1])
        masses.append((saliency.float() * (masks & ~torch.cat([nothing, masks[:-1]]))).sum(dim=(1, 2)).cpu())
        masks = torch.cat([nothing, masks])  # the start image first
        scores.append(torch.zeros(masks.shape[0]))
        make_copies = copies(image_index, image)
        step = 0
        while step < masks.shape[0]:
            take = min(batch_size - filled, masks.shape[0] - step)
            buffer.append(make_copies(masks[step:step + take]))
            owners.append((image_index, step, step + take))
            filled, step = filled + take, step + take
            if filled == batch_size:
                flush()
                filled = 0
    if filled:
        flush()
    curves = [torch.stack([cells_left.float(), image_scores[1:]], dim=1)
              for image_scores, cells_left in zip(scores, lefts)]
    return {"curves": curves, "start_scores": [image_scores[0] for image_scores in scores], "step_saliency": masses}
