"""Deletion / insertion correlation (DC / IC) and the single-step scores AD, IIC and ADD, docs/METHOD.md
"DC and IC" and "AD, IIC and ADD", as small numpy / tensor functions.

DC and IC are computed from what the curve tasks save: the score of the start image, the curve, and the
saliency mass of the cells each step perturbs. AD, IIC and ADD are computed from three scores per image:
on the clean image, on the image kept in proportion to its saliency, and on the image with its salient
part removed (single_step_scores).
"""
import numpy as np
import torch
import torch.nn.functional as F

from brnpa.metrics.perturbation import min_max


def pearson_rows(first, second):
    """Pearson correlation of each row of first with the same row of second; 0 for a row where either is
    constant (zero variance: the sequence says nothing about the other); nan for a row holding a nan or an inf.
    first, second: (N, T). Returns (N,)."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    norms = np.sqrt((first ** 2).sum(axis=1) * (second ** 2).sum(axis=1))
    products = (first * second).sum(axis=1)
    correlations = np.divide(products, norms, out=np.zeros(len(first)), where=norms > 0)
    correlations[~np.isfinite(norms) | ~np.isfinite(products)] = np.nan
    return correlations


def score_changes(start_scores, curves, deletion):
    """What each step did to the score: the drop (deletion) or the rise (insertion) from the score before the
    step to the score after it, the first step starting from the start image's score. start_scores: (N,);
    curves: (N, T, 2) of (cells left, score). Returns (N, T)."""
    scores = np.concatenate([np.asarray(start_scores, np.float64)[:, None], curves[:, :, 1]], axis=1)
    steps = scores[:, 1:] - scores[:, :-1]
    return -steps if deletion else steps


def step_correlations(arrays, deletion):
    """DC (deletion=True) or IC per image: the Pearson correlation of score_changes with the saliency mass
    each step perturbed. arrays: a curve task's 'curves' (N, T, 2), 'start_scores' (N,), 'step_saliency'
    (N, T). Returns (N,)."""
    changes = score_changes(arrays["start_scores"], arrays["curves"], deletion)
    return pearson_rows(changes, arrays["step_saliency"])


def clean_scores(arrays):
    """y per image, the score of the clean image: arrays['scores'] (N, 3) -> (N,). AD and ADD divide by it."""
    return arrays["scores"][:, 0]


def average_drop(arrays):
    """AD per image: max(0, y - y_kept) / y. arrays['scores']: (N, 3) of (clean, kept, removed)."""
    clean, kept = clean_scores(arrays), arrays["scores"][:, 1]
    return np.maximum(clean - kept, 0) / clean


def increase_in_confidence(arrays):
    """IIC per image: 1 where y_kept > y, else 0 (its mean is the share of images whose score rises)."""
    clean, kept = clean_scores(arrays), arrays["scores"][:, 1]
    return (kept > clean).astype(np.float64)


def average_drop_in_deletion(arrays):
    """ADD per image: (y - y_removed) / y (negative where removing the salient part raises the score)."""
    clean, removed = clean_scores(arrays), arrays["scores"][:, 2]
    return (clean - removed) / clean


def keep_mask(saliency, size):
    """The single-step mask of one image: the saliency (h, w) min-max scaled to [0, 1] and upsampled
    bilinearly (align_corners=False) to size (H, W). Returns (H, W), values in [0, 1]."""
    scaled = min_max(saliency.float())
    return F.interpolate(scaled[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def single_step_scores(forward, images, saliencies, classes, batch_size):
    """Per image, the softmax score of its class on the clean image x, on the kept image x * m and on the
    removed image x * (1 - m), m = keep_mask (the removed or dropped pixels become 0, as in deletion).
    The 3 copies of every image are scored batch_size at a time. forward: (B, 3, H, W) -> (B, class_nb)
    logits; images: sequence of (3, H, W); saliencies: sequence of (h, w). Returns a list of (3,) tensors
    (clean, kept, removed)."""
    copies, owners = [], []
    for index, (image, saliency) in enumerate(zip(images, saliencies)):
        mask = keep_mask(saliency.to(image.device), image.shape[-2:])
        copies += [image, image * mask, image * (1 - mask)]
        owners += [index] * 3
    scores = []
    for start in range(0, len(copies), batch_size):
        probabilities = torch.softmax(forward(torch.stack(copies[start:start + batch_size])).float(), dim=1)
        rows = torch.as_tensor([classes[owner] for owner in owners[start:start + batch_size]],
                               device=probabilities.device)
        scores.append(probabilities.gather(1, rows[:, None])[:, 0].cpu())
    return list(torch.cat(scores).view(-1, 3)) if scores else []
