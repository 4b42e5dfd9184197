"""Deletion / insertion curves (docs/METHOD.md, "DAUC and IAUC") as small tensor functions.

Deletion starts from the image and sets the most salient cells to 0;
insertion starts from a blurred image and copies the most salient cells
back from the clean one. Both are one curve function with another substrate;
metrics/curves.py lists them. Besides the curve, perturbation_records keeps
the start image's score and the saliency each step perturbs, from which
DC and IC are computed (metrics/faithfulness.py).
"""
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
    cells, and the picked cells are set to -1 (below any saliency) for the next steps. The order among equal
    values is topk's, which may differ between devices: the released code ran it on CPU tensors (its maps were
    loaded on the CPU and never moved), so it runs on the CPU here too, whatever the saliency's device.
    saliency: (h, w) in [0, 1]. Returns (T, h, w) bool on the saliency's device, as step_masks."""
    height, width = saliency.shape
    current = saliency.detach().cpu().flatten().clone().float()
    picked = torch.zeros(current.numel(), dtype=torch.bool, device=current.device)
    masks, left = [], current.numel()
    while left > 0:
        indices = current.topk(k=cells_per_step).indices[:left]
        picked[indices] = True
        current[indices] = -1
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


def deletion_substrate(image):
    """Deletion: (start image, what a chosen cell becomes) = (the image, 0: the ImageNet mean colour once the
    image is normalised, not black). image: (3, H, W)."""
    return image, torch.zeros_like(image)


def insertion_substrate(image):
    """Insertion: (start image, what a chosen cell becomes) = (the blurred image, the image). image: (3, H, W)."""
    return box_blur(image.unsqueeze(0))[0], image


def blend(start, chosen, masks):
    """Perturbed copies: chosen where the cell mask is set, start elsewhere.

    start, chosen: (3, H, W); masks: (T, h, w) bool, each cell a block of pixels.
    Returns (T, 3, H, W).
    """
    pixel_masks = F.interpolate(masks.unsqueeze(1).to(start.dtype), size=start.shape[-2:], mode="nearest")
    return start.unsqueeze(0) * (1 - pixel_masks) + chosen.unsqueeze(0) * pixel_masks


def perturbation_records(forward, images, saliencies, classes, substrate, cells_per_step, batch_size,
                         order=step_masks):
    """What a curve task saves of many images, filling each forward pass with up to batch_size perturbed
    copies, across steps and images.

    forward: (B, 3, H, W) -> (B, class_nb) logits. images: sequence of (3, H, W)
    (read lazily, in order); saliencies: sequence of (h, w); classes: the class
    predicted on each clean image; substrate: image -> (start image, what a chosen
    cell becomes), e.g. deletion_substrate; order: saliency -> step masks (step_masks, or
    topk_step_masks for the released code's order). Returns {'curves': list of (T, 2) tensors, per step
    (cells left, softmax score of the class after the step); 'start_scores': list of () tensors, the score
    of the start image (the clean image for deletion, the blurred one for insertion; not a point of the
    curve); 'step_saliency': list of (T,) tensors, the saliency summed over the cells each step perturbs}.
    """
    scores, masses, buffer, owners = [], [], [], []
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
        masks = order(saliency, cells_per_step)
        nothing = torch.zeros_like(masks[:1])
        masses.append((saliency.float() * (masks & ~torch.cat([nothing, masks[:-1]]))).sum(dim=(1, 2)).cpu())
        masks = torch.cat([nothing, masks])  # the start image first
        scores.append(torch.zeros(masks.shape[0]))
        start_image, chosen = substrate(image)
        step = 0
        while step < masks.shape[0]:
            take = min(batch_size - filled, masks.shape[0] - step)
            buffer.append(blend(start_image, chosen, masks[step:step + take]))
            owners.append((image_index, step, step + take))
            filled, step = filled + take, step + take
            if filled == batch_size:
                flush()
                filled = 0
    if filled:
        flush()
    curves = []
    for image_scores, saliency in zip(scores, saliencies):
        step_nb = len(image_scores) - 1
        cells_left = saliency.numel() - (torch.arange(step_nb) + 1) * cells_per_step
        curves.append(torch.stack([cells_left.float(), image_scores[1:]], dim=1))
    return {"curves": curves, "start_scores": [image_scores[0] for image_scores in scores], "step_saliency": masses}


def perturbation_curves(forward, images, saliencies, classes, substrate, cells_per_step, batch_size,
                        order=step_masks):
    """The curves of perturbation_records alone: a list of (T, 2) tensors of (cells left, score)."""
    return perturbation_records(forward, images, saliencies, classes, substrate, cells_per_step, batch_size,
                                order)["curves"]
