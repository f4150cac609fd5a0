"""A feature's rows as a store holds them for a decoder: one stored array, or a fused feature's layers flattened and
joined row by row (:func:`~preimage.pipeline.features.fuse_rows`); only the named layers' arrays are read."""

from __future__ import annotations

from collections.abc import Callable

from ..cache.store import feature_path
from .features import fuse_rows
from .names import feature_layers


def read_rows(store, name: str, start: int, stop: int):
    """Rows ``start:stop`` of the feature ``name`` as stored; of a fused name, each layer's rows flattened one after
    the other (what a fused decoder takes)."""
    return _each_layer(name, lambda path: store.read_rows(path, start, stop))


def take_rows(store, name: str, rows):
    """The feature ``name``'s ``rows`` (indices) as stored, a fused name's as :func:`read_rows` gives them."""
    return _each_layer(name, lambda path: store.take(path, rows))


def _each_layer(name: str, read: Callable):
    """``read(array path)`` of the feature ``name``, or of each fused layer, joined by :func:`fuse_rows`."""
    arrays = [read(feature_path(layer)) for layer in feature_layers(name)]
    return arrays[0] if len(arrays) == 1 else fuse_rows(arrays)
