"""Shared fixtures. Tests marked ``data`` need ../shared/data: they skip with a reason when it is
absent, unless CROSSKD_REQUIRE_DATA=1 (as in CI), where its absence is a failure."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from crosskd.datasets._paths import data_root

# The tests train tiny models: one thread per op is faster than two that wait on each other, and
# keeps run time steady when the machine is busy.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # Every test marked ``data`` gets the shared_data fixture: skip, or fail under CI.
    for item in items:
        if "data" in item.keywords and "shared_data" not in getattr(item, "fixturenames", ()):
            item.fixturenames.insert(0, "shared_data")


@pytest.fixture
def shared_data():
    """Path of ../shared/data; fails (not skips) when CROSSKD_REQUIRE_DATA=1 and it is absent."""
    root = data_root()
    if root is None:
        if os.environ.get("CROSSKD_REQUIRE_DATA") == "1":
            pytest.fail("CROSSKD_REQUIRE_DATA=1 but ../shared/data (or $CROSSKD_DATA) is absent")
        pytest.skip("reference data ../shared/data not found")
    return root


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)  # noqa: NPY002 (seeds code that still uses the global generator)
    torch.manual_seed(0)
    yield
