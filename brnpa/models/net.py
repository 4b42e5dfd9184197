"""Backbone + head + classifier, built from a ModelConfig. The heads are in brnpa/models/heads.py."""
import dataclasses
from typing import Optional

import torch.nn as nn

from brnpa.models.heads import head_class
from brnpa.models.resnet import build_resnet

# Auxiliary classifiers of --aux_on_masked: name -> indices of the vectors they read.
AUX_SLICES = {"0": (0,), "1": (1,), "2": (2,), "01": (0, 1), "12": (1, 2)}


class Net(nn.Module):
    """forward(images) -> dict(output (B, class_nb) logits, att_maps (B, M, h, w),
    norm (B, 1, h, w) feature norm, aux {name: logits} with --aux_on_masked)."""

    def __init__(self, backbone, head, class_nb, dropout=0.0, bias=False, aux_on_masked=False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head.out_dim, class_nb, bias=bias)
        self.aux = None
        if aux_on_masked:
            chan = backbone.out_chan
            # the authors' auxiliary layers always have a bias, whatever --lin_lay_bias says
            self.aux = nn.ModuleDict({name: nn.Linear(chan * len(inds), class_nb)
                                      for name, inds in AUX_SLICES.items()})

    def forward(self, images):
        features = self.backbone(images)
        pooled, maps = self.head(features, self.classifier)
        pooled = self.dropout(pooled)
        result = {"output": self.classifier(pooled),
                  "att_maps": maps, "norm": features.float().norm(dim=1, keepdim=True)}
        if self.aux is not None:
            # the auxiliary heads read z after dropout, detached: they do not train the backbone
            vectors = pooled.detach().view(pooled.shape[0], -1, features.shape[1])  # (B, K, C)
            result["aux"] = {name: self.aux[name](vectors[:, list(inds)].flatten(1))
                             for name, inds in AUX_SLICES.items()}
        return result


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that decides a model's architecture (the trainVal.py options of the same names).
    head: a name of models.heads.HEADS; the other fields are read by the backbone, the head or Net."""
    head: str
    class_nb: int
    backbone: str = "resnet50"
    pretrained: bool = False
    resnet_chan: int = 64
    resnet_stride: int = 2
    stride_lay2: int = 2
    stride_lay3: int = 1
    stride_lay4: int = 1
    end_relu: bool = True
    end_relu_blocks: str = "last"
    padding_mode: str = "zeros"
    pool_stride: Optional[int] = 2
    nb_att_maps: int = 3
    br_npa_randvec: bool = False
    br_npa_norefine: bool = False
    aux_on_masked: bool = False
    dropout: float = 0.0
    lin_lay_bias: bool = False

    @property
    def draws_at_random(self):
        """Whether its forward pass draws from torch's generator (BR-NPA's random-vector ablations): what it
        computes then depends on the seed and on the batches."""
        return self.head == "br_npa" and self.br_npa_randvec


def build_model(config):
    """The model a ModelConfig describes."""
    backbone = build_resnet(config.backbone, chan=config.resnet_chan, stride=config.resnet_stride,
                            stride_lay2=config.stride_lay2, stride_lay3=config.stride_lay3,
                            stride_lay4=config.stride_lay4, end_relu=config.end_relu, pretrained=config.pretrained,
                            padding_mode=config.padding_mode, pool_stride=config.pool_stride,
                            end_relu_blocks=config.end_relu_blocks)
    head = head_class(config.head)(backbone.out_chan, config)
    return Net(backbone, head, config.class_nb, config.dropout, config.lin_lay_bias, config.aux_on_masked)
