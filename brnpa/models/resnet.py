"""ResNet backbones returning the last feature map.

Parameter names are torchvision's, so torchvision's ImageNet state dicts
(minus ``fc``) load with ``strict=True``. Resolution is set by constructor
arguments: ``stride`` (conv1), ``pool_stride`` (the stem max-pool: 2, or None
for conv1's stride), ``stride_lay2..4`` (first block of each stage). At 448 px,
strides 2/2/2 give a 14x14 map, 2/1/1 give 56x56.

Two more choices say whose ResNet it is (docs/METHOD.md, "Backbone and map
sizes"): ``padding_mode`` of the 3x3 convolutions ('zeros', torchvision's, or
'circular', the authors' models/resnet.py), and ``end_relu_blocks``, the blocks
whose final ReLU ``end_relu=False`` removes ('last': the last block of the last
stage; 'first': the first block of every stage, bottleneck blocks only, as the
authors' file: its basic block always ends in a ReLU).
"""
import os

import torch
import torch.hub
import torch.nn as nn

from brnpa.core.errors import WeightsDownloadError


def conv3x3(in_chan, out_chan, stride=1, padding_mode="zeros"):
    return nn.Conv2d(in_chan, out_chan, kernel_size=3, stride=stride, padding=1, bias=False,
                     padding_mode=padding_mode)


def conv1x1(in_chan, out_chan, stride=1):
    return nn.Conv2d(in_chan, out_chan, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_chan, chan, stride=1, downsample=None, final_relu=True, padding_mode="zeros"):
        super().__init__()
        self.conv1 = conv3x3(in_chan, chan, stride, padding_mode)
        self.bn1 = nn.BatchNorm2d(chan)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(chan, chan, padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm2d(chan)
        self.relu_out = nn.ReLU(inplace=True)  # a module per use: DeepLIFT's rule is set per module
        self.downsample = downsample
        self.final_relu = final_relu

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + identity
        return self.relu_out(out) if self.final_relu else out


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""
    expansion = 4

    def __init__(self, in_chan, chan, stride=1, downsample=None, final_relu=True, padding_mode="zeros"):
        super().__init__()
        self.conv1 = conv1x1(in_chan, chan)
        self.bn1 = nn.BatchNorm2d(chan)
        self.conv2 = conv3x3(chan, chan, stride, padding_mode)
        self.bn2 = nn.BatchNorm2d(chan)
        self.conv3 = conv1x1(chan, chan * self.expansion)
        self.bn3 = nn.BatchNorm2d(chan * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu_out = nn.ReLU(inplace=True)  # a module per use: DeepLIFT's rule is set per module
        self.downsample = downsample
        self.final_relu = final_relu

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + identity
        return self.relu_out(out) if self.final_relu else out


def init_module(module):
    """The backbone's initialisation of one module (not its children): He-normal convolutions (fan out),
    BatchNorm scale 1 and shift 0 (its running statistics untouched)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d that pools a contiguous CPU tensor in channels-last layout and returns it contiguous
    (other tensors are pooled as they are). PyTorch's channels-last CPU kernel is several times faster on the
    stem's wide maps (python3 -m bench.cpu_kernels); it visits the windows and the output positions in the same
    order as the contiguous kernel, so values, chosen positions (the first maximum on ties) and gradients are
    the same bit for bit (tests/unit/test_resnet.py checks them).

    Being a subclass, it is not one of the modules captum's DeepLIFT recognises by exact type, so DeepLIFT
    passes the gradient through it (all of a window's change to its maximum) instead of captum's max-pool rule,
    which drops contributions where windows overlap, as the stem's 3 x 3 windows of stride 2 do: with the
    gradient, the attributions add up to the logit's change (tests/unit/test_gradient_sources.py; with captum's
    rule they fell short by up to a quarter on a tiny model). Guided Backprop changes ReLUs only."""

    def forward(self, x):
        if x.device.type != "cpu" or not x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class ResNet(nn.Module):
    """ResNet trunk: forward(x (B, 3, H, W)) -> feature map (B, out_chan, h, w)."""

    def __init__(self, block, layer_sizes, chan=64, stride=2, stride_lay2=2, stride_lay3=2,
                 stride_lay4=2, end_relu=True, padding_mode="zeros", pool_stride=2, end_relu_blocks="last"):
        super().__init__()
        self.in_chan = chan
        self.conv1 = nn.Conv2d(3, chan, kernel_size=7, stride=stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(chan)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = MaxPool2d(kernel_size=3, stride=stride if pool_stride is None else pool_stride, padding=1)
        self.layer1 = self._make_layer(block, chan, layer_sizes[0], 1, padding_mode)
        self.layer2 = self._make_layer(block, chan * 2, layer_sizes[1], stride_lay2, padding_mode)
        self.layer3 = self._make_layer(block, chan * 4, layer_sizes[2], stride_lay3, padding_mode)
        self.layer4 = self._make_layer(block, chan * 8, layer_sizes[3], stride_lay4, padding_mode)
        for block_ in end_relu_block_list(self, end_relu_blocks):
            block_.final_relu = end_relu
        self.out_chan = chan * 8 * block.expansion
        for module in self.modules():
            init_module(module)

    def _make_layer(self, block, chan, block_nb, stride, padding_mode):
        downsample = None
        if stride != 1 or self.in_chan != chan * block.expansion:
            downsample = nn.Sequential(conv1x1(self.in_chan, chan * block.expansion, stride),
                                       nn.BatchNorm2d(chan * block.expansion))
        blocks = [block(self.in_chan, chan, stride, downsample, padding_mode=padding_mode)]
        self.in_chan = chan * block.expansion
        blocks += [block(self.in_chan, chan, padding_mode=padding_mode) for _ in range(1, block_nb)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def end_relu_block_list(net, end_relu_blocks):
    """The blocks of a ResNet whose final ReLU --end_relu governs: 'last', the last block of the last stage;
    'first', the first block of each stage when it is a bottleneck (the authors' models/resnet.py passes its
    endRelu to those blocks, and its basic block ignores it)."""
    stages = (net.layer1, net.layer2, net.layer3, net.layer4)
    if end_relu_blocks == "last":
        return [net.layer4[-1]]
    if end_relu_blocks == "first":
        return [stage[0] for stage in stages if isinstance(stage[0], Bottleneck)]
    raise ValueError(f"end_relu_blocks must be 'last' or 'first', got '{end_relu_blocks}'")


ARCHITECTURES = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def build_resnet(name, chan=64, stride=2, stride_lay2=2, stride_lay3=2, stride_lay4=2, end_relu=True,
                 pretrained=False, padding_mode="zeros", pool_stride=2, end_relu_blocks="last"):
    """ResNet `name` (one of ARCHITECTURES), optionally with torchvision's ImageNet weights (they load into
    either padding: the padding has no parameters)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"backbone must be one of {', '.join(ARCHITECTURES)}, got '{name}'")
    block, layer_sizes = ARCHITECTURES[name]
    net = ResNet(block, layer_sizes, chan, stride, stride_lay2, stride_lay3, stride_lay4, end_relu, padding_mode,
                 pool_stride, end_relu_blocks)
    if pretrained:
        net.load_state_dict(imagenet_state_dict(name, chan))
    return net


def feature_map_side(img_size, stride=2, stride_lay2=2, stride_lay3=2, stride_lay4=2, pool_stride=2):
    """Side of the feature map of a square img_size input: conv1 (7x7, padding 3), max-pool (3x3, stride
    pool_stride, or conv1's for None, padding 1), then the first 3x3 convolution (padding 1) of stages 2 to 4."""
    side = (img_size + 2 * 3 - 7) // stride + 1
    side = (side + 2 - 3) // (stride if pool_stride is None else pool_stride) + 1
    for stage_stride in (stride_lay2, stride_lay3, stride_lay4):
        side = (side + 2 - 3) // stage_stride + 1
    return side


def imagenet_state_dict(name, chan):
    """torchvision's ImageNet weights for `name`, without fc; a clear error when offline."""
    import torchvision
    if chan != 64:
        raise ValueError(f"ImageNet weights exist for resnet_chan 64 only, got {chan}")
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    try:
        state_dict = weights.get_state_dict(progress=True)
    except Exception as error:  # URLError, HTTPError, socket errors: all mean "could not download"
        raise WeightsDownloadError(
            f"could not download the ImageNet weights of {name} ({weights.url}): {error}. "
            f"Download the file on a machine with internet access and put it in "
            f"{torchvision_cache_dir()}, or run with --pretrained False.") from error
    return {key: value for key, value in state_dict.items() if not key.startswith("fc.")}


def torchvision_cache_dir():
    return os.path.join(torch.hub.get_dir(), "checkpoints")

