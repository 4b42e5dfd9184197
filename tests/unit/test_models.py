import pytest
import torch

from helpers import non_linearities_outside_modules, tiny_model
from brnpa.models.heads import HEADS
from brnpa.jobs.training import build_optimizer, compute_loss

# the legacy options of each head: --attention / --br_npa still choose it
LEGACY_FLAGS = {"cnn": dict(attention=False), "b_cnn": dict(attention=True, br_npa=False),
                "br_npa": dict(attention=True, br_npa=True)}


@pytest.mark.parametrize("head", LEGACY_FLAGS)
def test_head_shapes_and_one_training_step(head):
    torch.manual_seed(0)
    model = tiny_model(**LEGACY_FLAGS[head])
    images, target = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    result = model(images)
    expected_maps = {"cnn": 1, "b_cnn": 4, "br_npa": 3}[head]
    assert result["output"].shape == (4, 5)
    assert result["att_maps"].shape == (4, expected_maps, 2, 2)
    assert result["norm"].shape == (4, 1, 2, 2)
    expected_dim = {"cnn": 64, "b_cnn": 3 * 64, "br_npa": 3 * 64}[head]
    assert model.classifier.in_features == expected_dim
    optimizer = build_optimizer(model.parameters(), "SGD", 0.01, 0.9)
    before = [p.detach().clone() for p in model.parameters()]
    loss = compute_loss(result, target, 1.0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bcnn_pooling_is_mean_of_maps_times_features():
    torch.manual_seed(0)
    model = tiny_model(head="b_cnn", nb_att_maps=2).eval()
    features = torch.relu(torch.randn(2, 64, 3, 3))
    pooled, maps = model.head(features, model.classifier)
    for k in range(2):
        expected = (maps[:, k:k + 1] * features).mean(dim=(2, 3))
        assert torch.allclose(pooled[:, k * 64:(k + 1) * 64], expected, atol=1e-6)


def test_aux_heads_add_their_losses():
    torch.manual_seed(0)
    model = tiny_model(head="br_npa", aux_on_masked=True)
    images, target = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    result = model(images)
    assert set(result["aux"]) == {"0", "1", "2", "01", "12"}
    assert result["aux"]["01"].shape == (3, 5)
    assert model.aux["01"].in_features == 2 * 64 and model.aux["0"].in_features == 64
    main_only = torch.nn.functional.cross_entropy(result["output"], target)
    aux_sum = sum(torch.nn.functional.cross_entropy(v, target) for v in result["aux"].values())
    assert torch.allclose(compute_loss(result, target, 1.0), main_only + aux_sum)
    # the aux heads read detached vectors: their loss does not reach the backbone
    aux_sum.backward()
    assert all(p.grad is None for p in model.backbone.parameters())


def test_dropout_and_bias_options():
    model = tiny_model(dropout=0.4, lin_lay_bias=True)
    assert model.dropout.p == 0.4 and model.classifier.bias is not None
    assert tiny_model().classifier.bias is None


@pytest.mark.parametrize("head", LEGACY_FLAGS)
def test_one_step_moves_the_classifier_by_the_hand_gradient(head):
    """SGD without momentum, lr 0.1: the classifier's new weights are W - 0.1 (softmax(W z) - onehot)^T z / B,
    with z the head's pooled vector of the batch (computed in train mode, as the step sees it)."""
    torch.manual_seed(0)
    model = tiny_model(head=head).train()
    images, target = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        pooled = model.head(model.backbone(images), model.classifier)[0]  # no dropout by default
        weight = model.classifier.weight.clone()
        probabilities = torch.softmax(pooled @ weight.T, dim=1)
        hand_gradient = (probabilities - torch.nn.functional.one_hot(target, 5).float()).T @ pooled / 4
    optimizer = build_optimizer(model.parameters(), "SGD", 0.1, 0.0)
    optimizer.zero_grad()
    compute_loss(model(images), target, 1.0).backward()
    optimizer.step()
    assert torch.allclose(model.classifier.weight, weight - 0.1 * hand_gradient, atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_every_non_linearity_of_a_model_is_a_module_used_once(head):
    """captum's Guided Backprop and DeepLIFT change the backward pass of nn.ReLU (and the other activation and
    pooling modules) only: a head that calls torch.relu would be differentiated as a plain gradient there, and
    a module called twice would get DeepLIFT's rule once. Every head's whole model passes."""
    torch.manual_seed(0)
    model = tiny_model(head=head).eval()
    functional, reused = non_linearities_outside_modules(model, torch.randn(2, 3, 32, 32))
    assert functional == [] and reused == []


def test_the_non_linearity_check_finds_a_functional_relu_and_a_reused_module():
    """The check above on a head written the way it must not be: torch.relu in its forward, one nn.ReLU module
    applied twice."""
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)
            self.act = torch.nn.ReLU()

        def forward(self, images):
            return self.act(self.act(torch.relu(self.conv(images)))).sigmoid()
    functional, reused = non_linearities_outside_modules(Functional(), torch.randn(1, 3, 4, 4))
    assert functional == ["relu in (model)", "sigmoid in (model)"] and reused == ["act"]
