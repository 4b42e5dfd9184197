"""Shared fixtures. Unit tests live in tests/unit, end-to-end runs of the scripts in tests/integration
(marked 'integration': pytest -m "not integration" runs the unit tests alone)."""
import os

import pytest

from helpers import TINY_CONFIG


def pytest_collection_modifyitems(config, items):
    integration = os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration")
    for item in items:
        if str(item.fspath).startswith(integration):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic dataset (3 classes, 32 px): its data_dir."""
    from brnpa.data.synthetic import make_synthetic
    data_dir = tmp_path_factory.mktemp("data")
    make_synthetic(str(data_dir), "tiny", class_nb=3, train_per_class=12, test_per_class=5, img_size=32, seed=3)
    return str(data_dir)


@pytest.fixture
def tiny_config(tmp_path):
    """A config file of the tiny setting (helpers.TINY_CONFIG): its path."""
    path = tmp_path / "tiny.config"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture
def search_config(tmp_path):
    """The tiny config for searches: batch sizes up to 8, a heartbeat every second. Its path, as a string."""
    path = tmp_path / "tiny_search.config"
    path.write_text(TINY_CONFIG + "max_batch_size = 8\noptuna_heartbeat = 1\n")
    return str(path)
