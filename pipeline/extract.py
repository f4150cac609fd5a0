"""Feature extraction as a dask graph: one task per store partition, each writing its own whole shards.

The client plans (which partitions still lack which arrays), the tasks decode, crop, extract in batches and
write, and only then mark their partition complete; so a killed run is finished by running it again, and a
complete store costs nothing to re-run.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache.backend import backend_for, is_url
from ..cache.repair import repair_store
from ..cache.store import READ, UNREADABLE, FeatureStore, StoreError, StoreHeader, feature_path
from ..runtime.progress import Progress, StepTimer
from ..runtime.signals import Interrupted, on_signals
from .cluster import local_cluster
from .contract import DRAFT_MIN_SIDE, FeatureJob, compute_features, plan_jobs, recipe, stored_row_shape
from .decode import DEFAULT_MAX_PIXELS, ImageReadError
from .images import center_square
from .sources import Source


@dataclass
class PartitionTask:
    """All one task needs: the store, its rows and their source items, and what to compute."""

    store: str
    index: int
    start: int
    source: Source  # only this partition's rows
    image_size: int
    write_images: bool
    features: list[FeatureJob]
    dtype: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    run: str = ""  # the extraction's token: which decoding logs speak of this run's attempts


class DecodingLog:
    """Which rows of a partition a task began to decode, in a small file of the store's (``.decoding-N.log``), so that
    when a worker dies inside a decoder (out of memory, a crash in a library) the task dask retries refuses the
    file that was being decoded and keeps every other one: the failure lands on the file that caused it. A file is
    refused only once it was being decoded at two deaths: a worker that died once there may have been killed from
    outside (a cancelled batch job, a node lost), and the retry decodes it again.

    Lines carry the extraction's ``run`` token: only a retry within the same run reads them; a run that was itself
    killed says nothing against its files. A file, not a folder, so zarr does not take it for a group member. A store
    at a URL cannot be appended to: its logs live in this machine's temporary folder, so they protect the retries
    that run on the same machine (a local cluster's)."""

    REASON = "the worker decoding this file died twice (out of memory, or a crash in the decoder); it was skipped"
    DEATHS = 2  # attempts that began the file and never finished it before it is refused

    def __init__(self, store: str | os.PathLike, index: int, run: str) -> None:
        folder = Path(store) if not is_url(store) else decoding_logs(str(store))
        self.path = folder / f".decoding-{index}.log"
        self.run = run
        self._file = None
        self._row: int | None = None

    def crashed(self) -> dict[int, str]:
        """The rows that earlier attempts of this run began and never finished ``DEATHS`` times, with the reason."""
        if not self.path.exists():
            return {}
        unfinished: Counter[int] = Counter()
        for line in self.path.read_text().splitlines():
            run, _, row = line.partition(" ")
            if run == self.run and row:
                unfinished[int(row.lstrip("+"))] += -1 if row.startswith("+") else 1
        return dict.fromkeys(sorted(r for r, n in unfinished.items() if n >= self.DEATHS), self.REASON)

    def begin(self, row: int) -> None:
        """Note that ``row`` is being decoded (and that the row before it, if any, finished)."""
        if self._file is None:
            ours = self.path.exists() and f"{self.run} " in self.path.read_text()
            self._file = open(self.path, "a" if ours else "w")  # noqa: SIM115  (closed by close())
        if self._row is not None:
            self._write(f"+{self._row}")
        self._write(str(row))
        self._row = row

    def end(self) -> None:
        """The last row begun finished too."""
        if self._row is not None:
            self._write(f"+{self._row}")
            self._row = None

    def _write(self, row: str) -> None:
        self._file.write(f"{self.run} {row}\n")
        self._file.flush()  # in the page cache: it survives the process, which is what a worker's death ends

    def close(self, complete: bool) -> None:
        """Done with the partition: the log goes once the partition is complete."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if complete:
            self.path.unlink(missing_ok=True)


def decoding_logs(url: str) -> Path:
    """This machine's folder for the decoding logs of the store at ``url``."""
    folder = Path(tempfile.gettempdir()) / "preimage-decoding" / hashlib.sha256(url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class PartitionResult:
    index: int
    rows: int
    read: int
    unreadable: int
    seconds: dict[str, float] = field(default_factory=dict)
    storage_error: str = ""  # the store could not be written: one line for the user (see :func:`storage_problem`)


def storage_problem(err: OSError, store: str, what: str = "the store") -> str:
    """One line for a store that cannot be written (the disk full, a read-only or forbidden folder, the store
    deleted under the run): where, what happened, and what to do; what was complete is kept either way."""
    advice = {
        errno.ENOSPC: "no space left on the device; free space (or give another --store) and run the same command "
        "again",
        errno.EDQUOT: "the disk quota is used up; free space and run the same command again",
        errno.EROFS: "the filesystem is read-only; give a --store on a writable one",
        errno.EACCES: "permission denied; give a --store you may write to",
        errno.EPERM: "permission denied; give a --store you may write to",
        errno.ENOENT: "a file vanished while it was written (the store deleted under the run?); run the same "
        "command again",
    }.get(err.errno, f"{err.strerror or err}; run the same command again once that is fixed")
    return f"{store}: cannot write {what}: {advice}. Every partition completed before is kept" + (
        f" ({err.filename})" if err.filename and err.errno not in (errno.ENOSPC, errno.EDQUOT) else ""
    )


def open_store(path: str, source: Source, image_size: int, shard_rows: int, jobs: list[FeatureJob], dtype: str):
    """Create or reopen the store and its feature arrays; an error when anything was made differently."""
    header = StoreHeader(source.describe(), recipe(image_size), shard_rows)
    store = FeatureStore.create_or_open(
        path, header, ids=source.ids, labels=source.labels, class_names=source.class_names, image_size=image_size
    )
    for job in jobs:
        store.ensure_feature(job.name, stored_row_shape(job.name, job.input_size), dtype, job.attrs())
    return store


def pending_tasks(
    store: FeatureStore, source: Source, jobs: list[FeatureJob], dtype: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[PartitionTask]:
    """One task per partition that lacks its images or any asked feature, carrying only what is missing."""
    run = uuid.uuid4().hex
    images_done = store.done("images")
    features_done = {job.name: store.done(job.name) for job in jobs}
    tasks = []
    for index, (start, stop) in enumerate(store.partitions()):
        missing = [job for job in jobs if not features_done[job.name][index]]
        if images_done[index] and not missing:
            continue
        tasks.append(
            PartitionTask(
                str(store.path),
                index,
                start=start,
                source=source.part(start, stop),
                image_size=int(store.group["images"].shape[1]),
                write_images=not images_done[index],
                features=missing,
                dtype=dtype,
                max_pixels=max_pixels,
                run=run,
            )
        )
    return tasks


def run_partition(task: PartitionTask) -> PartitionResult:
    """Decode, extract and write one partition; marks it complete only after every write has landed. A store
    that cannot be written comes back as the result's ``storage_error`` rather than an exception, so the user
    reads one line, not the task's dump in the worker's log.

    Torch's thread count is the worker process's (``local_cluster`` starts its workers with
    ``OMP_NUM_THREADS``); a task never changes it, since the setting is partly per thread and partly global.
    """
    try:
        return _run_partition(task)
    except OSError as err:
        problem = storage_problem(err, task.store, f"partition {task.index}")
        return PartitionResult(task.index, len(task.source), 0, 0, storage_error=problem)


def _run_partition(task: PartitionTask) -> PartitionResult:
    timer = StepTimer()
    store = FeatureStore.open(task.store, "r+")
    n = len(task.source)
    sizes = {task.image_size} | {job.input_size for job in task.features}
    crops: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
    reasons = [""] * n
    log = DecodingLog(task.store, task.index, task.run)
    with timer("decode"):
        images = task.source.read(DRAFT_MIN_SIDE, task.max_pixels, skip=log.crashed(), before=log.begin)
        for row, image in enumerate(images):
            if isinstance(image, ImageReadError):
                reasons[row] = str(image)
                continue
            for size in sizes:
                crops[size].append(center_square(image, size))
    log.end()
    log.close(complete=False)
    ok = np.array([not r for r in reasons])
    if not task.write_images:
        _check_same_rows(store, task, ok, reasons)

    with timer("write"):
        if task.write_images:
            images = np.stack(crops[task.image_size]) if ok.any() else None
            shape = (task.image_size, task.image_size, 3)
            store.write_rows("images", task.start, _all_rows(images, ok, shape, "uint8"))
            store.write_rows("failures", task.start, np.asarray(reasons, dtype=str))
            store.write_rows("status", task.start, np.where(ok, READ, UNREADABLE).astype(np.uint8))

    batches = {size: np.stack(c) for size, c in crops.items()} if ok.any() else {}
    computed = compute_features(task.features, batches, timer) if ok.any() else {}
    for job in task.features:
        with timer("write"):
            rows = _all_rows(computed.get(job.name), ok, store.features(job.name).shape[1:], task.dtype)
            store.write_rows(feature_path(job.name), task.start, rows)
    if task.write_images:
        store.mark_done("images", task.index)
    for job in task.features:
        store.mark_done(job.name, task.index)
    log.close(complete=True)
    return PartitionResult(task.index, n, read=int(ok.sum()), unreadable=int((~ok).sum()), seconds=timer.seconds)


def _all_rows(values: np.ndarray | None, ok: np.ndarray, row_shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A partition's rows of one array: ``values`` where the image was read, zeros for unreadable rows."""
    if values is not None and ok.all():
        return values.astype(dtype, copy=False)
    rows = np.zeros((len(ok), *row_shape), dtype)
    if values is not None:
        rows[ok] = values
    return rows


def _check_same_rows(store: FeatureStore, task: PartitionTask, ok: np.ndarray, reasons: list[str]) -> None:
    """Adding a feature re-reads the source: a row read before must still read (else the source changed)."""
    stop = task.start + len(ok)
    was_read = store.array("status")[task.start : stop] == READ
    changed = np.flatnonzero(was_read != ok)
    if len(changed):
        row = int(changed[0])
        now = reasons[row] or "readable now"
        raise RuntimeError(
            f"{task.source.ids[row]}: its read status changed since the store was written ({now}); "
            "the source changed under the store, so write a new store"
        )


@dataclass
class ExtractSummary:
    """What one ``extract`` run did, for the command's report."""

    store: str
    rows: int
    read: int
    unreadable: int
    partitions_run: int
    images_run: int
    seconds: float  # the whole call: lock, planning, cluster start-up and shutdown included
    step_seconds: dict[str, float]
    failures: list[tuple[int, str, str]]
    compute_seconds: float = 0.0  # from the first task submitted to the last one done, as the progress line counts
    repaired: list = field(default_factory=list)  # the Damage that --repair found and had recomputed

    @property
    def images_per_second(self) -> float:
        """The rate the progress line showed: images over the time the tasks ran (no start-up, no shutdown)."""
        return self.images_run / self.compute_seconds if self.compute_seconds > 0 else 0.0


def extract(
    store_path: str | os.PathLike,
    source: Source,
    specs: str,
    image_size: int = 128,
    shard_rows: int = 64,
    client_factory=None,
    dtype: str = "float32",
    weights: str | None = None,
    wait: bool = False,
    show_progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    repair: bool = False,
) -> ExtractSummary:
    """Compute ``specs`` for every row of ``source`` into the store, doing only what is not there yet.

    Images larger than ``max_pixels`` when decoded are rows with ``status`` 2 and the reason. With ``repair``, an
    existing store is verified first and its damaged or missing pieces recomputed (:func:`repair_store`).
    ``client_factory()`` is a context manager giving a dask client, entered only when there is work, so a
    complete store costs no cluster start-up (default: :func:`local_cluster`). Holds the store's lock throughout.
    """
    if len(source) == 0:
        raise ValueError(f"{source.location}: no files to read")
    jobs = plan_jobs(specs, image_size, weights, dtype)
    begin = time.perf_counter()
    try:
        summary = _extract_locked(
            store_path,
            source,
            jobs=jobs,
            image_size=image_size,
            shard_rows=shard_rows,
            client_factory=client_factory,
            dtype=dtype,
            wait=wait,
            show_progress=show_progress,
            max_pixels=max_pixels,
            repair=repair,
        )
    except OSError as err:  # the lock, the store's creation or a repair, on the client: the same one line
        if err.errno in STORAGE_ERRNOS and str(err.filename or "").startswith(str(store_path)):
            raise StoreError(storage_problem(err, str(store_path))) from None
        raise
    summary.seconds = time.perf_counter() - begin
    return summary


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _extract_locked(
    store_path, source, jobs, image_size, shard_rows, client_factory, dtype, wait, show_progress, max_pixels, repair
) -> ExtractSummary:
    """The body of :func:`extract`, under the store's lock."""
    steps: dict[str, float] = {}
    tasks: list[PartitionTask] = []
    compute_seconds = 0.0
    repaired = []
    with on_signals(), FeatureStore.lock(store_path, wait):
        if repair and backend_for(store_path).exists("zarr.json"):
            repaired = repair_store(FeatureStore.open(store_path, "r+"), source.ids, source.labels)
        store = open_store(
            str(store_path), source, image_size=image_size, shard_rows=shard_rows, jobs=jobs, dtype=dtype
        )
        lost = [] if repair else store.missing_shards()
        if lost:
            raise StoreError(
                f"{store_path}: {len(lost)} shard file(s) of partitions marked complete are missing "
                f"(first: {lost[0]}); run the same command with --repair to recompute them"
            )
        tasks = pending_tasks(store, source, jobs=jobs, dtype=dtype, max_pixels=max_pixels)
        if tasks:
            try:
                with (client_factory or local_cluster)() as client:
                    compute_seconds = _run(client, tasks, steps, show_progress)
            except BaseException as err:
                # the signal, or an error of the cluster's shutdown while the signal was unwinding it
                signalled = err if isinstance(err, Interrupted) else err.__context__
                if not isinstance(signalled, Interrupted):
                    raise
                done = int(np.sum([store.done(job.name).sum() for job in jobs]))
                total = len(jobs) * len(store.partitions())
                raise Interrupted(
                    signalled.signum,
                    f"{done} of {total} partition features are complete and kept; run the same command again to finish",
                ) from None
        status = store.status()
        failures = store.failures()
    return ExtractSummary(
        str(store_path),
        len(status),
        read=int((status == READ).sum()),
        unreadable=int((status == UNREADABLE).sum()),
        partitions_run=len(tasks),
        images_run=sum(len(t.source) for t in tasks),
        seconds=0.0,  # set by extract: the whole call
        step_seconds=steps,
        failures=failures,
        compute_seconds=compute_seconds,
        repaired=repaired,
    )


def _run(client, tasks: list[PartitionTask], steps: dict[str, float], show_progress: bool) -> float:
    """Submit every task, follow them with a progress line, stop at the first failure; returns the seconds from
    the first submission to the last task done."""
    from distributed import as_completed

    begin = time.perf_counter()
    progress = Progress(sum(len(t.source) for t in tasks)) if show_progress else None
    futures = [client.submit(run_partition, task, pure=False, key=f"partition-{task.index}") for task in tasks]
    try:
        for future in as_completed(futures):
            result = future.result()  # re-raises a task's error here
            if result.storage_error:
                raise StoreError(result.storage_error)
            for step, seconds in result.seconds.items():
                steps[step] = steps.get(step, 0.0) + seconds
            if progress:
                progress.update(result.rows)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if progress:
            progress.close()
    return time.perf_counter() - begin
