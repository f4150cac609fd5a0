"""preimage: reconstruct images from their features (HOG, LBP, SIFT, CNN layers).

    import preimage
    preimage.hog(images)                            # VLFeat's HOG of a batch, differentiable; also lbp, sift
    preimage.representation("alexnet:conv3")        # any representation as an nn.Module
    preimage.FeatureStore.open("photos.zarr")       # the store `preimage extract` writes
    preimage.load_decoder("alexnet:conv5")          # a shipped decoder (or a run folder): features -> images
    preimage.invert("photo.jpg", decoder="hog")     # images -> reconstructions
    preimage.optimize(images, "alexnet:conv3", steps=200)  # Mahendran & Vedaldi's inversion
    preimage.lpips(recon, images)                   # LPIPS (AlexNet, v0.1) of each pair
    preimage.build_zoo(["vgg16:conv5_3"], "photos/", "zoo/", budget="45m")  # preimage build: its cards

Names load on first use, so ``import preimage`` (and the ``preimage`` command's start) costs no torch import.
Channel layouts: docs/python.md.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("preimage")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"

# public name -> (module, attribute)
_EXPORTS = {
    "hog": ("preimage.pipeline.features", "hog"),
    "lbp": ("preimage.pipeline.features", "lbp"),
    "sift": ("preimage.pipeline.features", "sift"),
    "HOG": ("preimage.pipeline.features", "HOG"),
    "LBP": ("preimage.pipeline.features", "LBP"),
    "SIFT": ("preimage.pipeline.features", "SparseSIFT"),
    "HogParams": ("preimage.pipeline.features", "HogParams"),
    "LbpParams": ("preimage.pipeline.features", "LbpParams"),
    "SiftParams": ("preimage.pipeline.features", "SiftParams"),
    "representation": ("preimage.pipeline.features.extractor", "representation"),
    "Preprocess": ("preimage.pipeline.backbones.registry", "Preprocess"),
    "Extractor": ("preimage.pipeline.features.extractor", "Extractor"),
    "list_representations": ("preimage.pipeline.features", "list_representations"),
    "create_backbone": ("preimage.pipeline.backbones", "create_backbone"),
    "FeatureStore": ("preimage.cache.store", "FeatureStore"),
    "load_decoder": ("preimage.train.models.loading", "load_decoder"),
    "invert": ("preimage.api", "invert"),
    "lpips": ("preimage.train.scoring.lpips", "lpips"),
    "LPIPS": ("preimage.train.scoring.lpips", "LPIPS"),
    "optimize": ("preimage.api", "optimize"),
    "ImageInputError": ("preimage.pipeline.checks", "ImageInputError"),
    "build_zoo": ("preimage.build.builder", "build"),  # not "build": the subpackage preimage.build
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # once loaded, an ordinary attribute
        return value
    raise AttributeError(f"module 'preimage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
