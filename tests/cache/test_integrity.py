"""Damaged stores: every chunk's checksum is checked on read, a missing shard of a complete partition is an error
naming the file, `verify` lists the damage with its rows, and `extract --repair` restores a clean run's arrays."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from preimage.cache import store as store_module
from preimage.cache.shards import ShardDamaged
from preimage.cache.store import FeatureStore
from preimage.cli import main
from preimage.pipeline.sources import folder_source
from preimage.train.training.trainer import TrainConfig, train

from ..helpers import checksums, run_extract, write_crops

SPECS = "hog,lbp"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos) -> Path:
    return write_crops(tmp_path_factory.mktemp("integrity") / "images", photos, 40, 100)


@pytest.fixture(scope="module")
def clean(folder, dask_client, tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("clean") / "s.zarr"
    run_extract(path, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=8)
    return path, checksums(path)


@pytest.fixture
def copy(clean, tmp_path) -> Path:
    path = tmp_path / "s.zarr"
    shutil.copytree(clean[0], path)
    return path


def flip_bytes(file: Path, at: float = 0.3, count: int = 3) -> None:
    data = bytearray(file.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def shard(store: Path, array: str, index: int) -> Path:
    return next((store / array / "c").glob(f"{index}/**/*")) if (store / array / "c" / str(index)).is_dir() else None


DAMAGE = {
    "deleted": lambda f: f.unlink(),
    "truncated": lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),
    "flipped": flip_bytes,
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("array", ["features/hog", "images"])
def test_damage_is_refused_on_read_listed_by_verify_and_repaired(copy, clean, folder, dask_client, how, array):
    file = next(p for p in sorted((copy / array / "c" / "2").rglob("*")) if p.is_file())
    DAMAGE[how](file)
    store = FeatureStore.open(copy)
    with pytest.raises(ShardDamaged, match=f"{file}: .*rows 16-23"):
        store.read_rows(array, 16, 24)
    with pytest.raises(ShardDamaged, match=str(file)):
        store.take(array, np.arange(40))

    result = CliRunner().invoke(main, ["verify", str(copy)])
    assert result.exit_code == 1
    assert f"{array}: {file} (rows 16-23)" in result.output and "--repair" in result.output

    summary = run_extract(copy, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=8, repair=True)
    assert [(d.array, d.rows) for d in summary.repaired] == [(array, (16, 24))]
    assert summary.partitions_run == 1
    assert checksums(copy) == clean[1]  # every array equals the clean run's
    assert CliRunner().invoke(main, ["verify", str(copy)]).exit_code == 0


def test_a_damaged_status_chunk_and_ids_chunk_are_repaired(copy, clean, folder, dask_client):
    flip_bytes(copy / "status" / "c" / "1", at=0.5, count=2)
    flip_bytes(copy / "ids" / "c" / "3", at=0.5, count=2)
    damage = FeatureStore.open(copy).verify()
    assert sorted((d.array, d.rows) for d in damage) == [("ids", (24, 32)), ("status", (8, 16))]
    run_extract(copy, folder_source(folder), SPECS, dask_client, image_size=32, shard_rows=8, repair=True)
    assert checksums(copy) == clean[1]


def test_plain_zarr_reads_the_checksummed_store_and_checks_it(copy):
    group = zarr.open_group(str(copy), mode="r")
    assert group["features/hog"][:].shape[0] == 40
    codecs = group["features/hog"].metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd", "crc32c"]
    flip_bytes(next(p for p in sorted((copy / "features/hog/c/0").rglob("*")) if p.is_file()))
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_group(str(copy), mode="r")["features/hog"][:8]


def test_train_and_analyze_stop_naming_the_damaged_file(copy, clean, tmp_path):
    file = next(p for p in sorted((copy / "features/hog/c/1").rglob("*")) if p.is_file())
    flip_bytes(file)
    config = TrainConfig(
        str(copy), "hog", str(tmp_path / "run"), target_size=16, epochs=1, batch_size=8, width=16, precision="fp32"
    )
    with pytest.raises(ShardDamaged, match=str(file)):
        train(config, show_progress=False)
    args = ["train", "--store", str(copy), "--feature", "hog", "--out", str(tmp_path / "r2"), "--width", "16"]
    result = CliRunner().invoke(main, [*args, "--target-size", "16", "--batch-size", "8", "--epochs", "1"])
    assert result.exit_code == 1 and str(file) in result.output and "Traceback" not in result.output
    good = tmp_path / "good"  # a decoder trained on the intact store, scored on the damaged copy
    train(
        TrainConfig(
            str(clean[0]), "hog", str(good), target_size=16, epochs=1, batch_size=8, width=16, precision="fp32"
        ),
        show_progress=False,
    )
    scored = CliRunner().invoke(
        main, ["analyze", "error", "--store", str(copy), "--decoder", str(good), "--split", "all"]
    )
    assert scored.exit_code == 1 and str(file) in scored.output and "Traceback" not in scored.output


def test_an_older_store_without_checksums_is_read_and_says_so(folder, dask_client, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    path = tmp_path / "old.zarr"
    run_extract(path, folder_source(folder), "hog", dask_client, image_size=32, shard_rows=8)
    monkeypatch.undo()
    store = FeatureStore.open(path)
    assert not store.checksums and store.meta["schema_version"] == 1
    codecs = store.features("hog").metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd"]
    assert "no chunk checksums (an older store)" in CliRunner().invoke(main, ["info", str(path)]).output
    run_extract(path, folder_source(folder), "hog,lbp", dask_client, image_size=32, shard_rows=8)  # extended as is
    assert not FeatureStore.open(path).checksums and FeatureStore.open(path).done("lbp").all()
    assert FeatureStore.open(path).verify() == []


def test_extract_itself_catches_a_deleted_shard_and_points_to_repair(copy, clean, folder):
    file = next(p for p in sorted((copy / "features" / "lbp" / "c" / "3").rglob("*")) if p.is_file())
    file.unlink()
    args = [
        "extract",
        "--images",
        str(folder),
        "--store",
        str(copy),
        "--feature",
        SPECS,
        "--size",
        "32",
        "--shard-rows",
        "8",
        "--workers",
        "1",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "complete already" not in result.output
    assert f"features/lbp: {file} (rows 24-31)" in result.output and "--repair" in result.output
    repaired = CliRunner().invoke(main, [*args, "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert checksums(copy) == clean[1]


def chunk_bytes(file: Path, chunks_per_shard: int) -> list[tuple[int, int]]:
    """(offset, length) of each chunk of a shard file, from its index (the last 16 bytes per chunk, then a crc)."""
    data = file.read_bytes()
    index = np.frombuffer(data[-16 * chunks_per_shard - 4 : -4], np.dtype("<u8")).reshape(-1, 2)
    return [(int(o), int(n)) for o, n in index]


@pytest.mark.parametrize("array", ["features/hog", "images"])
def test_verify_finds_a_flipped_byte_in_every_chunk_of_every_shard(copy, array):
    """Each chunk position of each shard in turn (the first, the last, and the short last shard's): a verify that
    skipped any chunk would call one of these stores clean."""
    per_shard = 8 // store_module.CHUNK_ROWS
    files = sorted(p for p in (copy / array / "c").rglob("*") if p.is_file())
    assert len(files) == 5 and per_shard == 2  # 40 rows in shards of 8, chunks of 4
    for shard, file in enumerate(files):
        original = file.read_bytes()
        for chunk, (offset, length) in enumerate(chunk_bytes(file, per_shard)):
            data = bytearray(original)
            data[offset + length // 2] ^= 0xFF
            file.write_bytes(bytes(data))
            damage = FeatureStore.open(copy).verify()
            assert [(d.array, d.rows) for d in damage] == [(array, (8 * shard, 8 * shard + 8))], (shard, chunk)
            assert f"chunk {chunk}" in damage[0].problem
        file.write_bytes(original)
    assert FeatureStore.open(copy).verify() == []
