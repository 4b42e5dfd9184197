"""The table of attention heads. A head turns the backbone's feature map into the vector the classifier
reads and the attention maps that are saved and evaluated:

    forward(features (B, C, h, w), classifier) -> (pooled vector (B, out_dim), attention maps (B, M, h, w))

classifier is the model's last layer (nn.Linear(out_dim, class_nb)), for a head whose map depends on the class
it explains (a CAM head: the classifier's weights of the predicted class); the built-in heads ignore it.

Each head class (a subclass of Head) states what the rest of the code needs from it:
- out_dim (set by __init__(chan, config)): the size of the pooled vector, the classifier's input;
  config is the models.net.ModelConfig of the run (a head reads the fields it needs, e.g. nb_att_maps);
- saliency(maps (..., M, h, w), norm (..., 1, h, w)) -> (..., h, w): its saliency before min-max scaling,
  which the metrics use (metrics.perturbation.saliency_map). Head's default is combine_maps(maps) times the
  feature norm;
- combine_maps(maps (..., M, h, w)) -> (..., h, w): how its maps become one map (Head's default: the first);
- released_map_axis (optional, default True): False where the authors' released code handled the head's
  map without its map axis (the CNN), for `--att_metrics_saliency released`.

A head applies its non-linearities (ReLU, sigmoid, softmax, max-pooling...) as modules, each module used once
(nn.ReLU(), not torch.relu): captum's Guided Backprop and DeepLIFT change the backward pass of such modules
only. tests/unit/test_models.py fails for a head that calls one as a function.

Adding a head: write its class here (or in a module of brnpa/models/ imported here), add it to HEADS, and add
a model id using it to brnpa/core/model_ids.py. `--head NAME` chooses it (the option table checks the name against
HEADS once the options are parsed: --help does not import this module).
"""
import torch
import torch.nn as nn

from brnpa.models.br_npa import representative_vectors
from brnpa.models.resnet import BasicBlock


class Head(nn.Module):
    """What every head shares: its saliency is its combined map times the feature norm, and its combined map is
    its first map, unless it says otherwise."""
    released_map_axis = True

    def forward(self, features, classifier):
        raise NotImplementedError

    @staticmethod
    def combine_maps(maps):
        return maps[..., 0, :, :]

    @classmethod
    def saliency(cls, maps, norm):
        return cls.combine_maps(maps) * norm[..., 0, :, :]


class CNNHead(Head):
    """Plain CNN: spatial mean; the 'attention map' is the feature norm (one map). The authors' released code
    kept this map without its map axis (released_map_axis False), which its saved arrays and its DAUC code
    reflect (metrics.saliency's released mode reproduces it)."""
    released_map_axis = False

    def __init__(self, chan, config):
        super().__init__()
        self.out_dim = chan

    def forward(self, features, classifier):
        return features.mean(dim=(2, 3)), features.norm(dim=1, keepdim=True)


class BCNNHead(Head):
    """Bilinear attention pooling (WS-DAN): BasicBlock + bias-free 1x1 conv to K+1 maps, ReLU;
    z = concat_k(spatial mean of A_k * F) over the first K maps. Its saliency reads the mean of the maps."""

    def __init__(self, chan, config):
        super().__init__()
        self.nb_maps = config.nb_att_maps
        self.att_block = BasicBlock(chan, chan)
        self.att_conv = nn.Conv2d(chan, self.nb_maps + 1, kernel_size=1, bias=False)  # bias-free, as the authors'
        # a module, not torch.relu: Guided Backprop and DeepLIFT (captum) change the backward pass of nn.ReLU
        # modules only, and a functional ReLU would be differentiated as a plain ReLU
        self.att_relu = nn.ReLU()
        self.out_dim = chan * self.nb_maps

    def forward(self, features, classifier):
        maps = self.att_relu(self.att_conv(self.att_block(features)))  # (B, K+1, h, w)
        pooled = torch.einsum("bkhw,bchw->bkc", maps[:, :self.nb_maps], features)
        pooled = pooled / (features.shape[2] * features.shape[3])
        return pooled.flatten(1), maps

    @staticmethod
    def combine_maps(maps):
        return maps.mean(dim=-3)


class BRNPAHead(Head):
    """Non-parametric BR-NPA head (see models.br_npa.representative_vectors); its saliency reads the first
    map (the most active vector's). Ablations: br_npa_norefine, br_npa_randvec."""

    def __init__(self, chan, config):
        super().__init__()
        self.nb_maps = config.nb_att_maps
        self.refine, self.rand_vec = not config.br_npa_norefine, config.br_npa_randvec
        self.out_dim = chan * self.nb_maps

    def forward(self, features, classifier):
        return representative_vectors(features, self.nb_maps, self.refine, self.rand_vec)


HEADS = {"cnn": CNNHead, "b_cnn": BCNNHead, "br_npa": BRNPAHead}


def head_class(name):
    """The head class registered under name; ValueError listing the heads otherwise."""
    if name not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got '{name}'")
    return HEADS[name]
