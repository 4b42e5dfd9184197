import math

import torch

from brnpa.models.br_npa import representative_vectors


def slow_representative_vectors(features, nb_vec, refine=True, picks=None):
    """Obvious per-image, per-column loop in float64 (picks: forced indices for the random mode)."""
    features = features.double()
    batch_size, chan, height, width = features.shape
    all_vectors, all_maps = [], []
    for b in range(batch_size):
        columns = [features[b, :, i // width, i % width] for i in range(height * width)]
        norms = [float(torch.sqrt((col * col).sum())) + 1e-5 for col in columns]
        scores = list(norms)
        vectors, maps = [], []
        for k in range(nb_vec):
            j = picks[b][k] if picks is not None else max(range(len(scores)), key=lambda i: scores[i])
            ref = columns[j]
            sims = [float((col * ref).sum()) / (norms[i] * norms[j]) for i, col in enumerate(columns)]
            total = sum(sims)
            att = [s / total for s in sims]
            refined = sum(a * col for a, col in zip(att, columns))
            vectors.append(refined if refine else ref)
            maps.append(torch.tensor(att, dtype=torch.float64).view(height, width))
            scores = [(1 - s) * sc for s, sc in zip(sims, scores)]
        all_vectors.append(torch.cat(vectors))
        all_maps.append(torch.stack(maps))
    return torch.stack(all_vectors), torch.stack(all_maps)


def test_hand_worked_2x2():
    # columns: x1=(1,0) x2=(0,2) / x3=(1,1) x4=(0,1), in row-major order
    features = torch.tensor([[[[1., 0.], [1., 0.]], [[0., 2.], [1., 1.]]]])
    vectors, maps = representative_vectors(features, 2)
    r2 = 1 / math.sqrt(2)
    # k=1 picks x2 (norm 2): c = (0, 1, 1/sqrt2, 1); then s = (1, 0, sqrt2 (1 - 1/sqrt2), 0)
    a1 = torch.tensor([0, 1, r2, 1]) / (2 + r2)
    # k=2 picks x1: c = (1, 0, 1/sqrt2, 0)
    a2 = torch.tensor([1, 0, r2, 0]) / (1 + r2)
    assert torch.allclose(maps[0, 0].flatten(), a1, atol=1e-4)
    assert torch.allclose(maps[0, 1].flatten(), a2, atol=1e-4)
    v1 = a1[1] * torch.tensor([0., 2.]) + a1[2] * torch.tensor([1., 1.]) + a1[3] * torch.tensor([0., 1.])
    v2 = a2[0] * torch.tensor([1., 0.]) + a2[2] * torch.tensor([1., 1.])
    assert torch.allclose(vectors[0], torch.cat([v1, v2]), atol=1e-4)
    no_refine, _ = representative_vectors(features, 2, refine=False)
    assert torch.allclose(no_refine[0], torch.tensor([0., 2., 1., 0.]))


def test_matches_slow_loop():
    torch.manual_seed(0)
    features = torch.relu(torch.randn(3, 5, 4, 6))
    for refine in (True, False):
        vectors, maps = representative_vectors(features, 3, refine=refine)
        slow_vectors, slow_maps = slow_representative_vectors(features, 3, refine=refine)
        assert vectors.shape == (3, 15) and maps.shape == (3, 3, 4, 6)
        assert torch.allclose(vectors.double(), slow_vectors, atol=1e-5)
        assert torch.allclose(maps.double(), slow_maps, atol=1e-6)


def test_random_vectors_match_slow_loop_with_same_picks():
    torch.manual_seed(1)
    features = torch.relu(torch.randn(2, 4, 3, 3))
    generator = torch.Generator().manual_seed(5)
    vectors, maps = representative_vectors(features, 3, rand_vec=True, generator=generator)
    # the picks are the argmax of the same uniform draws, replayed here
    replay = torch.Generator().manual_seed(5)
    picks = [[], []]
    for _ in range(3):
        draw = torch.rand((2, 9), generator=replay).argmax(dim=1)
        for b in range(2):
            picks[b].append(int(draw[b]))
    slow_vectors, slow_maps = slow_representative_vectors(features, 3, picks=picks)
    assert torch.allclose(vectors.double(), slow_vectors, atol=1e-5)
    assert torch.allclose(maps.double(), slow_maps, atol=1e-6)
    # and the picks are not those of the norm ordering
    default_vectors, _ = representative_vectors(features, 3)
    assert not torch.allclose(default_vectors, vectors)


def test_float32_under_bf16_input():
    features = torch.relu(torch.randn(2, 4, 3, 3)).bfloat16()
    vectors, maps = representative_vectors(features, 2)
    assert vectors.dtype == torch.float32 and maps.dtype == torch.float32
    assert torch.allclose(maps.sum(dim=(2, 3)), torch.ones(2, 2), atol=1e-5)


def test_zero_feature_map_gives_zero_maps_not_nan():
    vectors, maps = representative_vectors(torch.zeros(1, 3, 2, 2), 2)
    assert torch.equal(maps, torch.zeros(1, 2, 2, 2)) and torch.equal(vectors, torch.zeros(1, 6))
