"""Attention-map statistics saved with the test results: uint8 scaling, sparsity."""
import torch


def scale_to_uint8(maps):
    """Min-max scale each image's maps together to 0..255.

    maps: (B, M, h, w) float. Returns (B, M, h, w) uint8.
    """
    flat = maps.float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-12)
    return (scaled * 255).round().to(torch.uint8).view(maps.shape)


def sparsity(maps, norm):
    """Sparsity of each image's attention (lower = sparser).

    maps: (B, M, h, w), norm: (B, 1, h, w) feature norm. Each map is weighted
    by norm / max(norm), divided by its own max (+1e-5); the maps are averaged,
    then the spatial mean is taken. Returns (B,).
    """
    maps, norm = maps.float(), norm.float()
    weighted = maps * norm / norm.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    weighted = weighted / (weighted.flatten(2).max(dim=2).values[:, :, None, None] + 1e-5)
    return weighted.mean(dim=1).flatten(1).mean(dim=1)
