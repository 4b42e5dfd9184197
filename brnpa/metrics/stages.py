"""The stages of a model (models.net.Net) that the sanity checks re-initialise one after the other, from the top
(brnpa/metrics/sanity.py). Torch-free: the option table (--sanity_stages) reads them."""

SANITY_STAGES = ("classifier", "layer4", "layer3", "layer2", "layer1", "stem")
