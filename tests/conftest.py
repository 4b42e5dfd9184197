import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic dataset (3 classes, 32 px): its data_dir."""
    from data.synthetic import make_synthetic
    data_dir = tmp_path_factory.mktemp("data")
    make_synthetic(str(data_dir), "tiny", class_nb=3, train_per_class=12, test_per_class=5, img_size=32, seed=3)
    return str(data_dir)
