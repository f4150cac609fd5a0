"""The zarr v3 feature store: layout, metadata and readers shared by every job (issue #3)."""

SCHEMA_VERSION = 1
