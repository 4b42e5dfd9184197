"""Backbone + head + classifier. Heads share one interface:
forward(features (B, C, h, w)) -> (pooled vector (B, D), attention maps (B, M, h, w))."""
import torch
import torch.nn as nn

from models.br_npa import representative_vectors
from models.resnet import BasicBlock, build_resnet

# Auxiliary classifiers of --aux_on_masked: name -> indices of the vectors they read.
AUX_SLICES = {"0": (0,), "1": (1,), "2": (2,), "01": (0, 1), "12": (1, 2)}


class CNNHead(nn.Module):
    """Spatial mean; the 'attention map' is the feature norm (one map)."""

    def __init__(self, chan):
        super().__init__()
        self.out_dim = chan

    def forward(self, features):
        return features.mean(dim=(2, 3)), features.norm(dim=1, keepdim=True)


class BCNNHead(nn.Module):
    """Bilinear attention pooling (WS-DAN): BasicBlock + bias-free 1x1 conv to K+1 maps, ReLU;
    z = concat_k(spatial mean of A_k * F) over the first K maps."""

    def __init__(self, chan, nb_maps):
        super().__init__()
        self.nb_maps = nb_maps
        self.att_block = BasicBlock(chan, chan)
        self.att_conv = nn.Conv2d(chan, nb_maps + 1, kernel_size=1, bias=False)  # bias-free, as the authors'
        self.out_dim = chan * nb_maps

    def forward(self, features):
        maps = torch.relu(self.att_conv(self.att_block(features)))  # (B, K+1, h, w)
        pooled = torch.einsum("bkhw,bchw->bkc", maps[:, :self.nb_maps], features)
        pooled = pooled / (features.shape[2] * features.shape[3])
        return pooled.flatten(1), maps


class BRNPAHead(nn.Module):
    """Non-parametric BR-NPA head (see models.br_npa.representative_vectors)."""

    def __init__(self, chan, nb_maps, refine=True, rand_vec=False):
        super().__init__()
        self.nb_maps, self.refine, self.rand_vec = nb_maps, refine, rand_vec
        self.out_dim = chan * nb_maps

    def forward(self, features):
        return representative_vectors(features, self.nb_maps, self.refine, self.rand_vec)


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
        pooled, maps = self.head(features)
        pooled = self.dropout(pooled)
        result = {"output": self.classifier(pooled),
                  "att_maps": maps, "norm": features.float().norm(dim=1, keepdim=True)}
        if self.aux is not None:
            # the auxiliary heads read z after dropout, detached: they do not train the backbone
            vectors = pooled.detach().view(pooled.shape[0], -1, features.shape[1])  # (B, K, C)
            result["aux"] = {name: self.aux[name](vectors[:, list(inds)].flatten(1))
                             for name, inds in AUX_SLICES.items()}
        return result


def build_model(args):
    """The model described by the options (see args.py)."""
    backbone = build_resnet(args.backbone, chan=args.resnet_chan, stride=args.resnet_stride,
                            stride_lay2=args.stride_lay2, stride_lay3=args.stride_lay3,
                            stride_lay4=args.stride_lay4, end_relu=args.end_relu, pretrained=args.pretrained)
    chan = backbone.out_chan
    if not args.attention:
        head = CNNHead(chan)
    elif args.br_npa:
        head = BRNPAHead(chan, args.nb_att_maps, refine=not args.br_npa_norefine, rand_vec=args.br_npa_randvec)
    else:
        head = BCNNHead(chan, args.nb_att_maps)
    return Net(backbone, head, args.class_nb, args.dropout, args.lin_lay_bias, args.aux_on_masked)


def model_type(args):
    """'cnn', 'b_cnn' or 'br_npa': decides how a saliency map is read from the maps."""
    if not args.attention:
        return "cnn"
    return "br_npa" if args.br_npa else "b_cnn"
