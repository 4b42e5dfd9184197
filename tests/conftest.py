import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

TINY_CONFIG = """[default]
exp_id = e2e
dataset_train = tiny_train
dataset_val = tiny_train
dataset_test = tiny_test
class_nb = 3
train_prop = 0.75
img_size = 32
backbone = resnet18
resnet_chan = 8
resnet_stride = 1
optim = Adam
lr = 0.003
use_scheduler = False
batch_size = 8
max_batch_size_single_pass = 4
val_batch_size = 16
epochs = 2
max_worse_epoch_nb = 5
num_workers = 0
att_metrics_img_nb = 4
att_metrics_batch_size = 6
"""


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic dataset (3 classes, 32 px): its data_dir."""
    from data.synthetic import make_synthetic
    data_dir = tmp_path_factory.mktemp("data")
    make_synthetic(str(data_dir), "tiny", class_nb=3, train_per_class=12, test_per_class=5, img_size=32, seed=3)
    return str(data_dir)
