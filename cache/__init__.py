"""The zarr v3 feature store: its layout, metadata, checksums, verification and repair, shared by every job.
The schema version lives with the layout it describes (:data:`.store.SCHEMA_VERSION`)."""
