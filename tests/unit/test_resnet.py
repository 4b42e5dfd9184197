import pytest
import torch
import torchvision

from brnpa.models.resnet import MaxPool2d, build_resnet


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
    from brnpa.core.errors import UserError, WeightsDownloadError
    with pytest.raises(WeightsDownloadError, match="--pretrained False") as raised:
        build_resnet("resnet18", pretrained=True)
    assert isinstance(raised.value, UserError)  # reported in one line by every entry point
    # through the entry point: a message, no traceback, nothing written
    import trainVal
    from brnpa.data.synthetic import make_synthetic
    make_synthetic(str(tmp_path), "s", class_nb=2, train_per_class=4, test_per_class=2, img_size=32)
    with pytest.raises(SystemExit, match="could not download the ImageNet weights"):
        trainVal.main(["--data_dir", str(tmp_path), "--results_dir", str(tmp_path / "results"),
                       "--dataset_train", "s_train", "--dataset_val", "s_train", "--dataset_test", "s_test",
                       "--class_nb", "2", "--backbone", "resnet18", "--pretrained", "True", "--train_prop", "0.5"])
    assert not (tmp_path / "results").exists()


def authors_features(state, x, layer_sizes, bottleneck, stride, stage_strides, end_relu):
    """The backbone of the authors' models/resnet.py (their later repository, version of 2021-11-17), by hand
    from its description, with F.* calls on the weights of a state dict (eval-mode BatchNorm): the 7x7 stem
    convolution padded with zeros, every 3x3 convolution padded circularly, the stem max-pool with the stem's
    stride, and endRelu given to the first block of each stage, which only a bottleneck block reads."""
    import torch.nn.functional as F

    def bn(x, name):
        return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], False, 0.0, 1e-5)

    def conv(x, name, stride=1):
        weight = state[f"{name}.weight"]
        if weight.shape[-1] == 3:
            return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), weight, stride=stride)
        return F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2)

    x = F.max_pool2d(torch.relu(bn(conv(x, "conv1", stride), "bn1")), 3, stride=stride, padding=1)
    for stage, (block_nb, stage_stride) in enumerate(zip(layer_sizes, (1, *stage_strides)), start=1):
        for index in range(block_nb):
            name, block_stride = f"layer{stage}.{index}", stage_stride if index == 0 else 1
            if bottleneck:
                out = torch.relu(bn(conv(x, f"{name}.conv1"), f"{name}.bn1"))
                out = torch.relu(bn(conv(out, f"{name}.conv2", block_stride), f"{name}.bn2"))
                out = bn(conv(out, f"{name}.conv3"), f"{name}.bn3")
            else:
                out = torch.relu(bn(conv(x, f"{name}.conv1", block_stride), f"{name}.bn1"))
                out = bn(conv(out, f"{name}.conv2"), f"{name}.bn2")
            has_downsample = f"{name}.downsample.0.weight" in state
            identity = bn(conv(x, f"{name}.downsample.0", block_stride), f"{name}.downsample.1") if has_downsample \
                else x
            out = out + identity
            x = out if bottleneck and index == 0 and not end_relu else torch.relu(out)
    return x


@pytest.mark.parametrize("name, layer_sizes, bottleneck, stride", [
    ("resnet50", [3, 4, 6, 3], True, 2), ("resnet50", [3, 4, 6, 3], True, 1), ("resnet18", [2, 2, 2, 2], False, 1)])
def test_the_authors_backbone_as_described(name, layer_sizes, bottleneck, stride):
    """--padding_mode circular --pool_stride None --end_relu_blocks first --end_relu False against the hand-built
    reference, on random weights and BatchNorm statistics (so that every choice shows in the features); the
    feature map's side is feature_map_side's."""
    from brnpa.models.resnet import feature_map_side
    torch.manual_seed(0)
    net = build_resnet(name, chan=8, stride=stride, stride_lay2=2, stride_lay3=1, stride_lay4=2, end_relu=False,
                       padding_mode="circular", pool_stride=None, end_relu_blocks="first").eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        ours = net(x)
        expected = authors_features(net.state_dict(), x, layer_sizes, bottleneck, stride, (2, 1, 2), end_relu=False)
    assert ours.shape == expected.shape
    assert ours.shape[-1] == feature_map_side(40, stride, 2, 1, 2, pool_stride=None)
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-4)
    if bottleneck:  # the first blocks without their ReLU make a difference the reference sees
        with_relu = authors_features(net.state_dict(), x, layer_sizes, bottleneck, stride, (2, 1, 2), end_relu=True)
        assert not torch.allclose(with_relu, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_torchvision_weights_load_into_either_padding(padding_mode):
    """The padding has no parameters: torchvision's state dict (an untrained one: no download here) loads
    strictly into the authors' backbone as into torchvision's."""
    reference = torchvision.models.resnet50(weights=None)
    state_dict = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    net = build_resnet("resnet50", padding_mode=padding_mode, pool_stride=None, end_relu_blocks="first")
    net.load_state_dict(state_dict, strict=True)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in state_dict.items())
    assert all(conv.padding_mode == padding_mode for conv in net.modules()
               if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3))
