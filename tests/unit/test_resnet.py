import pytest
import torch
import torchvision

from models.resnet import MaxPool2d, build_resnet


def torchvision_features(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_same_as_torchvision(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    ours = build_resnet(name).eval()
    state_dict = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state_dict, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), torchvision_features(reference, x), atol=1e-5)


def test_stem_max_pool_same_values_and_gradients_as_the_contiguous_kernel():
    """The stem's channels-last max-pool against torch's contiguous kernel, bit for bit: after a ReLU and a
    rounding most windows hold ties (zeros and equal values), where the chosen position decides the gradient;
    an output position reached by several windows sums their gradients."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(3, 16, 33, 30)).round(decimals=1)
    grad_out = torch.randn(3, 16, 17, 15)
    ours_in, reference_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = MaxPool2d(kernel_size=3, stride=2, padding=1)(ours_in)
    reference = torch.nn.functional.max_pool2d(reference_in, kernel_size=3, stride=2, padding=1)
    ours.backward(grad_out)
    reference.backward(grad_out)
    assert ours.is_contiguous() and torch.equal(ours, reference)
    assert torch.equal(ours_in.grad, reference_in.grad)
    pooled = MaxPool2d(kernel_size=3, stride=2, padding=1)(x.contiguous(memory_format=torch.channels_last))
    assert pooled.is_contiguous(memory_format=torch.channels_last)  # a channels-last input keeps its layout


@pytest.mark.parametrize("size,strides,expected", [
    (224, (2, 2, 2), 7), (448, (2, 2, 2), 14), (224, (2, 1, 1), 28), (448, (2, 1, 1), 56)])
def test_feature_map_sizes(size, strides, expected):
    net = build_resnet("resnet50", chan=8, stride_lay2=strides[0], stride_lay3=strides[1], stride_lay4=strides[2]).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, size, size))
    assert features.shape == (1, 8 * 8 * 4, expected, expected)


def test_end_relu_and_width():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        with_relu = build_resnet("resnet18", chan=8).eval()(x)
        without = build_resnet("resnet18", chan=8, end_relu=False).eval()(x)
    assert with_relu.shape[1] == 64 and with_relu.min() >= 0
    assert without.min() < 0


def test_pretrained_without_internet_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models._api as api

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", refuse)
    from core.errors import UserError, WeightsDownloadError
    with pytest.raises(WeightsDownloadError, match="--pretrained False") as raised:
        build_resnet("resnet18", pretrained=True)
    assert isinstance(raised.value, UserError)  # reported in one line by every entry point
    # through the entry point: a message, no traceback, nothing written
    import trainVal
    from data.synthetic import make_synthetic
    make_synthetic(str(tmp_path), "s", class_nb=2, train_per_class=4, test_per_class=2, img_size=32)
    with pytest.raises(SystemExit, match="could not download the ImageNet weights"):
        trainVal.main(["--data_dir", str(tmp_path), "--results_dir", str(tmp_path / "results"),
                       "--dataset_train", "s_train", "--dataset_val", "s_train", "--dataset_test", "s_test",
                       "--class_nb", "2", "--backbone", "resnet18", "--pretrained", "True", "--train_prop", "0.5"])
    assert not (tmp_path / "results").exists()
