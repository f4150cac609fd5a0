"""Fixtures the tests of train's packages share."""

from __future__ import annotations

import pytest

from ..helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client, photos):
    return make_store(tmp_path_factory.mktemp("train"), dask_client, photos, 32)
