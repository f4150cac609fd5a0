"""Small helpers shared by the store and pipeline tests."""

from __future__ import annotations

import contextlib
import hashlib

import zarr


def run_extract(store, source, specs, client, **kwargs):
    """``extract`` on an existing in-process dask client, without a progress line."""
    from preimage.pipeline.extract import extract

    kwargs.setdefault("shard_rows", 4)
    return extract(
        store, source, specs, client_factory=lambda: contextlib.nullcontext(client), show_progress=False, **kwargs
    )


def checksums(path) -> dict[str, str]:
    """sha256 of the contents of every array of a zarr store, read with plain zarr."""
    out = {}

    def visit(group, prefix):
        for key, member in sorted(group.members()):
            if isinstance(member, zarr.Array):
                data = member[...]
                text = data.dtype.kind in "TUO" or "String" in str(data.dtype)
                raw = "\0".join(map(str, data.tolist())).encode("utf-8", "surrogatepass") if text else data.tobytes()
                out[prefix + key] = hashlib.sha256(raw).hexdigest()
            else:
                visit(member, f"{prefix}{key}/")

    visit(
        zarr.open_group(
            str(path), mode="r", storage_options={"use_listings_cache": False} if "://" in str(path) else None
        ),
        "",
    )
    return out


def write_crops(folder, photos: dict, count: int, side: int, step: tuple[int, int] = (4, 3)):
    """``count`` PNG crops ``side`` pixels square of scikit-image's photos, each shifted by ``step`` from the last
    (cycling through the photos): a folder of distinct real images for small stores."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    sources = list(photos.values())
    for i in range(count):
        crop = sources[i % len(sources)][step[0] * i : step[0] * i + side, step[1] * i : step[1] * i + side]
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return folder


def kernel_equals_torch(kernel, torch_path, gray_photos, atol: float) -> None:
    """The compiled kernel (what CPU batches run) and the torch ops give the same features on at least 20 real photos
    of every size the suite has (16 px and more), one by one."""
    import torch

    sized = [image for image in gray_photos if min(image.shape) >= 16]
    assert len(sized) >= 20
    for image in sized:
        x = torch.from_numpy(image)[None]
        torch.testing.assert_close(torch_path(x), kernel(x), rtol=0, atol=atol)


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_endpoint(bucket: str = "lab"):
    """moto's S3 server on a free loopback port with ``bucket`` made, for this process and the processes it starts
    (credentials and ``AWS_ENDPOINT_URL_S3`` in the environment); yields its URL."""
    import logging
    import os

    import fsspec
    from moto import server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    moto = server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(S3_CREDENTIALS, AWS_ENDPOINT_URL_S3=url)
    s3 = type(fsspec.filesystem("s3", skip_instance_cache=True))
    s3.clear_instance_cache()  # filesystems made for an earlier endpoint (moto's buckets outlive its servers)
    try:
        fs = fsspec.filesystem("s3", use_listings_cache=False)
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        yield url
    finally:
        s3.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        moto.stop()


def extract_train_analyze_invert(folder, spec: str, tmp_path, *extract: str) -> list[str]:
    """``extract`` (with ``extract``'s options), a small ``train``, ``analyze error`` and ``invert`` of ``spec`` on
    an image folder, as a user runs them; each must succeed. Their outputs, and the inverted image is written."""
    from click.testing import CliRunner

    from preimage.cli import main

    store, run = str(tmp_path / "s.zarr"), str(tmp_path / "run")
    steps = [
        ["extract", "--images", str(folder), "--store", store, "--feature", spec, "--workers", "1", *extract],
        [
            "train",
            "--store",
            store,
            "--feature",
            spec,
            "--out",
            run,
            "--target-size",
            "16",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--width",
            "16",
            "--precision",
            "fp32",
        ],
        ["analyze", "error", "--store", store, "--decoder", run],
        ["invert", str(folder / "00.png"), "--decoder", run, "--out", str(tmp_path / "invert")],
    ]
    outputs = []
    for args in steps:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args[0], result.output)
        outputs.append(result.output)
    assert (tmp_path / "invert" / "00.png").is_file()
    return outputs


def make_store(root, client, photos, size):
    """A HOG store of 96 crops of scikit-image's photos at ``size`` px, 8 rows a shard (the trainer's tests)."""
    import cv2

    from preimage.pipeline.sources import folder_source

    folder = root / "images"
    folder.mkdir(exist_ok=True)
    sources = list(photos.values())
    for i in range(96):
        photo = sources[i % len(sources)]
        crop = photo[3 * i : 3 * i + 120, 2 * i : 2 * i + 120]
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    path = root / f"s{size}.zarr"
    run_extract(path, folder_source(folder), "hog", client, image_size=size, shard_rows=8)
    return path
