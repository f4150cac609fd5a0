"""``preimage extract``: a folder, list or HDF5 file of images (or scikit-image's photos) into a feature store."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import click

from ..pipeline.cluster import DASHBOARD_ADDRESS
from ..pipeline.decode import DEFAULT_MAX_PIXELS
from .options import NEW_STORE, SIDE, WEIGHTS, WEIGHTS_HELP, batch_job_options, count, hidden_alias

DEFAULT_FEATURES = "hog,lbp,sift,alexnet:conv1-conv5"


@click.command()
@click.option(
    "--images",
    default=None,
    help="A folder (walked recursively; class sub-folders become labels), a .txt list of paths, or FILE.h5[:DATASET]. "
    "Default: the colour photos that ship with scikit-image.",
)
@click.option("--store", type=NEW_STORE, required=True, help="The zarr store to write or add to.")
@click.option(
    "--feature",
    "specs",
    default=DEFAULT_FEATURES,
    show_default=True,
    help="Representations, comma-separated (preimage features lists them).",
)
@hidden_alias("--features", "specs")
@click.option(
    "--size", type=SIDE, default=128, show_default=True, help="Side of the stored images and hand-crafted inputs."
)
@click.option(
    "--shard-rows", type=count(1, 1 << 20), default=64, show_default=True, help="Rows per shard (and per task)."
)
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler (tcp://host:8786).")
@click.option(
    "--workers", type=count(1, 256), default=None, help="Worker processes of the local cluster [one per core]."
)
@batch_job_options
@click.option(
    "--dashboard-address",
    default=DASHBOARD_ADDRESS,
    show_default=True,
    help="Where the local cluster's dashboard listens (HOST:PORT; :8787 for every interface).",
)
@click.option("--float16", is_flag=True, help="Store features as float16 (half the bytes; docs/performance.md).")
@click.option("--weights", type=WEIGHTS, default=None, help=WEIGHTS_HELP)
@click.option(
    "--max-pixels",
    type=count(1, 1 << 40),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse, as an unreadable row with the reason, any image larger than this when decoded (about 16 "
    "bytes a pixel to decode: 1 GB at the default). Big JPEGs count at their reduced decoding scale.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Verify the store first (as preimage verify) and recompute every damaged or "
    "missing shard; the arrays then equal a clean run's.",
)
@click.option("--strict", is_flag=True, help="Exit non-zero when any image could not be read.")
@click.option("--wait", is_flag=True, help="If another extract holds the store, wait for it instead of stopping.")
def extract(
    images,
    store,
    specs,
    size,
    shard_rows,
    scheduler,
    workers,
    batch,
    dashboard_address,
    float16,
    weights,
    max_pixels,
    repair,
    strict,
    wait,
) -> None:
    """Compute features for a collection of images into a sharded zarr store, resumably.

    Only what the store lacks is computed: run the same command again after a crash to finish, or with more
    --features to add them. Unreadable files are recorded with their reason in the store's `failures`.
    """
    from ..cache.backend import backend_for
    from ..pipeline.cluster import local_cluster, remote_cluster
    from ..pipeline.extract import extract as run_extract
    from ..pipeline.features import expand_specs, get_representation
    from ..pipeline.sources import open_source
    from ..runtime.extras import require

    for name in expand_specs(specs):  # a wrong model or layer name fails before a large folder is listed
        get_representation(name)
    backend = backend_for(store)  # an s3:// store without s3fs: one line, before the folder is listed
    if batch:
        require("cluster", "--cluster (batch jobs)")
    source = open_source(images, exclude=store)  # an existing store inside the image folder is skipped
    label = source.location if source.kind != "sample-photos" else "scikit-image's sample photos (no --images given)"
    click.echo(f"source: {label}: {len(source)} files, {len(source.class_names)} classes")

    def announce(client) -> None:
        workers_info = client.scheduler_info().get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers_info.values())
        click.echo(f"dask: {len(workers_info)} workers, {threads} threads; dashboard {client.dashboard_link}")

    if scheduler and batch:
        raise click.UsageError("give --scheduler (a running dask cluster) or --cluster (batch jobs), not both")
    if batch:
        from ..cache.backend import is_url
        from ..pipeline.batch_cluster import batch_cluster

        if is_url(store):  # the jobs' logs in the current folder; the workers need not see a URL as a path
            logs, visible = Path(f"{str(store).rstrip('/').rsplit('/', 1)[-1]}.jobs").resolve(), []
        else:  # beside the store
            logs, visible = store.resolve().parent / f"{store.name}.jobs", [store]
        spec = replace(batch, log_directory=str(logs), dashboard_address=dashboard_address)
        visible += [source.location] if source.kind in ("folder", "list") else []

        def submitted(client, line: str) -> None:
            click.echo(line)
            announce(client)

        factory = partial(batch_cluster, spec, tuple(visible), submitted)
    elif scheduler:
        factory = partial(remote_cluster, scheduler, announce)
    else:
        factory = partial(local_cluster, workers, announce, dashboard_address)
    new_store = not backend.exists()
    summary = run_extract(
        store,
        source,
        specs=specs,
        image_size=size,
        shard_rows=shard_rows,
        client_factory=factory,
        dtype="float16" if float16 else "float32",
        weights=weights,
        wait=wait,
        max_pixels=max_pixels,
        repair=repair,
    )
    if new_store and summary.rows and not summary.read:  # nothing an image: no store of unreadable rows is left
        backend.remove("")
        reasons = "; ".join(f"{ident}: {reason}" for _, ident, reason in summary.failures[:3])
        raise click.ClickException(
            f"no readable image among the {summary.rows} files of {source.location} ({reasons}); nothing was written"
        )
    for piece in summary.repaired:
        click.echo(f"repaired: {piece}")
    if summary.partitions_run == 0:
        click.echo(f"{store}: complete already, nothing to do ({summary.rows} rows)")
    else:
        overhead = summary.seconds - summary.compute_seconds
        click.echo(
            f"{store}: {summary.images_run} rows in {summary.partitions_run} partitions, "
            f"{summary.compute_seconds:.1f} s ({summary.images_per_second:.1f} images/s; "
            f"{overhead:.1f} s more to start and stop the cluster)"
        )
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary.step_seconds.items(), key=lambda kv: -kv[1]))
        click.echo(f"  time per step, summed over workers: {steps}")
    click.echo(f"rows: {summary.rows}: {summary.read} read, {summary.unreadable} unreadable")
    for _, ident, reason in summary.failures[:20]:
        click.echo(f"  unreadable: {ident}: {reason}")
    if len(summary.failures) > 20:
        click.echo(f"  ... and {len(summary.failures) - 20} more (preimage info {store})")
    if strict and summary.unreadable:
        raise click.ClickException(f"--strict: {summary.unreadable} file(s) could not be read")
