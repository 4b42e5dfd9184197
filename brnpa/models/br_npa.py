"""BR-NPA: non-parametric grouping of a feature map into K representative vectors."""
import torch


def representative_vectors(features, nb_vec, refine=True, rand_vec=False, generator=None):
    """Group the columns of a feature map around its K most active vectors.

    features: (B, C, H, W), non-negative (the backbone ends with a ReLU).
    Returns vectors (B, nb_vec * C) = concat(v_1..v_K) and maps (B, nb_vec, H, W)
    = (a^1..a^K) in pick order. Computed in float32 whatever the input dtype, also under autocast.

    With x_i the N = H * W columns and n_i = ||x_i|| + 1e-5, scores s = n; for
    k = 1..K: j = argmax s (argmax of fresh uniform noise with rand_vec),
    r = x_j, c_i = <x_i, r> / (n_i n_j), a = c / sum c, v_k = sum_i a_i x_i
    (v_k = r without refine), s <- (1 - c) * s. Where every column is zero
    (e.g. a fully deleted image), sum c = 0 and the maps are 0 instead of NaN.
    """
    with torch.autocast(features.device.type, enabled=False):  # bmm would otherwise run in bf16 under autocast
        return grouping(features.float(), nb_vec, refine, rand_vec, generator)


def grouping(features, nb_vec, refine, rand_vec, generator):
    """representative_vectors' computation, on float32 features (B, C, H, W), outside autocast."""
    batch_size, chan, height, width = features.shape
    x = features.flatten(2).transpose(1, 2)  # (B, N, C)
    norms = x.norm(dim=2) + 1e-5  # (B, N)
    scores = norms
    batch_index = torch.arange(batch_size, device=x.device)
    vectors, maps = [], []
    for _ in range(nb_vec):
        if rand_vec:
            pick_scores = torch.rand(scores.shape, device=x.device, generator=generator)
        else:
            pick_scores = scores
        picked = pick_scores.argmax(dim=1)  # (B,)
        ref = x[batch_index, picked]  # (B, C)
        ref_norm = norms[batch_index, picked]  # (B,)
        sim = torch.bmm(x, ref.unsqueeze(2)).squeeze(2) / (norms * ref_norm.unsqueeze(1))  # (B, N)
        # an all-zero feature map gives sim = 0 everywhere: maps and vectors 0 there, not 0/0 = NaN
        att = sim / sim.sum(dim=1, keepdim=True).clamp_min(1e-12)
        vectors.append(torch.bmm(att.unsqueeze(1), x).squeeze(1) if refine else ref)
        maps.append(att)
        scores = (1 - sim) * scores
    vectors = torch.cat(vectors, dim=1)
    maps = torch.stack(maps, dim=1).view(batch_size, nb_vec, height, width)
    return vectors, maps
