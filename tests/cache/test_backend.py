"""The store backend contract (:class:`preimage.cache.backend.Backend`), held by both backends alike: a folder and
an object store (moto's S3 server on loopback). Whole-object writes, reads of what is absent, listings, sizes,
removal by prefix, and one writer at a time."""

from __future__ import annotations

import pytest

from preimage.cache.backend import Backend, LocalBackend, ObjectBackend, StoreLocked, backend_for

from ..helpers import s3_endpoint


@pytest.fixture(scope="module")
def endpoint():
    pytest.importorskip("s3fs", reason="stores at s3:// URLs need s3fs (pip install preimage[s3])")
    pytest.importorskip("moto.server", reason="the S3 endpoint of this test is moto's server")
    with s3_endpoint() as url:
        yield url


@pytest.fixture(params=["folder", "bucket"])
def backend(request, tmp_path) -> Backend:
    if request.param == "folder":
        return backend_for(tmp_path / "store.zarr")
    request.getfixturevalue("endpoint")
    return backend_for(f"s3://lab/{tmp_path.name}/store.zarr")


def test_objects_are_written_whole_read_back_listed_and_removed(backend):
    assert isinstance(backend, LocalBackend | ObjectBackend)
    assert backend.read("zarr.json") is None and not backend.exists("zarr.json")
    backend.write("zarr.json", b"{}")
    backend.write("features/hog/c/0", b"x" * 10)
    backend.write("features/hog/c/1", b"y" * 5)
    backend.write("images/c/0", b"z" * 3)
    assert backend.read("features/hog/c/1") == b"y" * 5 and backend.exists("zarr.json") and backend.exists()
    assert sorted(backend.objects("features/hog")) == ["features/hog/c/0", "features/hog/c/1"]
    assert backend.size("features") == 15 and backend.size() == 20
    backend.write("features/hog/c/1", b"new")  # replaced whole
    assert backend.read("features/hog/c/1") == b"new"
    backend.delete("features/hog/c/0")
    backend.delete("features/hog/c/0")  # nothing to delete: no error
    backend.remove("features")
    assert list(backend.objects("features")) == [] and backend.read("images/c/0") == b"z" * 3
    assert str(backend.locate("images/c/0")).endswith("store.zarr/images/c/0")


def test_one_writer_at_a_time(backend):
    backend.write("zarr.json", b"{}")
    with backend.lock(), pytest.raises(StoreLocked, match="--wait"), backend.lock():
        pass
    with backend.lock():  # released: taken again
        pass


def test_a_location_picks_its_backend():
    assert isinstance(backend_for("some/folder.zarr"), LocalBackend)
    assert isinstance(backend_for("file:///tmp/x.zarr"), LocalBackend)
    local = LocalBackend("x.zarr")
    assert backend_for(local) is local
