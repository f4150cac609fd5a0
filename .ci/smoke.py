"""The installed package as a user meets it, run by .ci/wheel with the python of a fresh venv, from a folder outside
the checkout. Stages: ``bare`` (the wheel, no extras), ``all`` (the wheel with ``[all]``), ``no-compiler`` (the
sdist built with no C compiler: the torch ops, with the numbers of the kernels). Exits non-zero on the first check
that fails, saying which."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path.cwd()


def run(*args: str, expect: int = 0, timeout: float = 600) -> str:
    """``preimage ARGS`` as a user runs it; its output (stdout and stderr), checked against the exit code."""
    result = subprocess.run([str(BIN / "preimage"), *args], capture_output=True, text=True, timeout=timeout, cwd=HERE)
    output = result.stdout + result.stderr
    if result.returncode != expect:
        sys.exit(f"FAILED: preimage {' '.join(args)} exited {result.returncode}, not {expect}:\n{output}")
    return output


def one_error_line(output: str, *fragments: str) -> None:
    """An expected failure: exactly one line, ``Error: ...``, with each fragment, and no traceback."""
    lines = output.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("Error: ") or "Traceback" in output:
        sys.exit(f"FAILED: not one Error: line ({len(lines)} lines):\n{output}")
    for fragment in fragments:
        if fragment not in lines[0]:
            sys.exit(f"FAILED: {fragment!r} not in: {lines[0]}")
    print(f"  ok: {lines[0][:150]}")


def photo(path: Path) -> Path:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (9, 9), 3)
    cv2.imwrite(str(path), image)
    return path


def not_in_checkout() -> None:
    import preimage

    where = Path(preimage.__file__).resolve()
    if "site-packages" not in where.parts:
        sys.exit(f"FAILED: preimage imported from {where}, not from the installed wheel")
    print(f"  ok: preimage {preimage.__version__} from {where.parent}")


def bare(version: str) -> None:
    not_in_checkout()
    shown = run("--version")
    if version not in shown:
        sys.exit(f"FAILED: --version says {shown.strip()!r}, not {version}")
    if "hog" not in run("zoo"):
        sys.exit("FAILED: preimage zoo lists no hog decoder")
    images = HERE / "photos"
    images.mkdir(exist_ok=True)
    photo(images / "a.png")
    run("invert", str(images / "a.png"), "--feature", "hog", "--out", "inverted")
    if not (HERE / "inverted" / "a.png").is_file():
        sys.exit("FAILED: invert wrote no picture")
    print("  ok: invert with a shipped decoder")
    started = time.perf_counter()
    output = run("demo", "--crops", "256", "--steps", "20", "--workers", "1", "--out", "demo")
    if not (HERE / "demo" / "hog.png").is_file():
        sys.exit(f"FAILED: the demo wrote no out/hog.png:\n{output}")
    print(f"  ok: demo (256 crops, 20 steps) in {time.perf_counter() - started:.0f} s")
    # each command that needs an extra says which, in one line
    one_error_line(run("explore", expect=1), "preimage explore needs", "pip install 'preimage[explore]'")
    store = ["extract", "--images", str(images), "--feature", "hog"]
    one_error_line(run(*store, "--store", "s3://bucket/x.zarr", expect=1), "pip install 'preimage[s3]'")
    one_error_line(run(*store, "--store", "c.zarr", "--cluster", "slurm", expect=1), "pip install 'preimage[cluster]'")
    one_error_line(run("features", "--model", "hf:facebook/dinov2-small", expect=1), "pip install 'preimage[models]'")
    if (HERE / "c.zarr").exists():
        sys.exit("FAILED: extract --cluster without its extra left a store")


def tiny_hf_model(folder: Path) -> Path:
    """A tiny DINOv2 as ``save_pretrained`` writes it, with the processor settings the hub's own files give."""
    import transformers

    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=28, patch_size=14
    )
    transformers.Dinov2Model(config).save_pretrained(folder)
    processor = {
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "do_center_crop": True,
        "crop_size": {"height": 28, "width": 28},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def explore() -> tuple[str, list[str]]:
    """``preimage explore`` started on loopback: what it printed before its URL, and the decoders it serves."""
    process = subprocess.Popen(
        [str(BIN / "preimage"), "explore", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE,
        start_new_session=True,
    )
    try:
        printed = ""
        for _ in range(20):  # warnings first (decoders whose model has no weights here), then the URL
            line = process.stdout.readline()
            printed += line
            found = re.search(r"(http://\S+/)", line)
            if found or not line:
                break
        if not found:
            sys.exit(f"FAILED: explore printed no URL: {printed}")
        with urllib.request.urlopen(found.group(1) + "api/state", timeout=60) as response:
            panels = [panel["name"] for panel in json.loads(response.read())["panels"]]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(15)
    return printed, panels


def explore_offline() -> None:
    """Without weights for a model (this machine is offline and has none cached), the page still serves the other
    decoders and says which it leaves out; with them (a machine with internet downloads them), it serves all."""
    from preimage.train.models import zoo

    printed, panels = explore()
    shipped = [e.name for e in zoo.list_shipped() if not e.identity.from_source]
    left_out = [name for name in shipped if name not in panels]
    if not panels or any(name not in printed for name in left_out):
        sys.exit(f"FAILED: explore serves {panels}, and its warnings do not name {left_out}:\n{printed}")
    print(f"  ok: explore serves {len(panels)} decoders, and names the {len(left_out)} without weights here")


def explore_all() -> None:
    printed, panels = explore()
    if "warning" in printed:
        sys.exit(f"FAILED: explore left decoders out:\n{printed}")
    print(f"  ok: explore on loopback serves all {len(panels)} decoders")


def with_all() -> None:
    not_in_checkout()
    explore_offline()
    model = tiny_hf_model(HERE / "tiny-dinov2")
    images = HERE / "photos"
    images.mkdir(exist_ok=True)
    for i in range(4):
        photo(images / f"{i}.png")
    spec = f"hf:{model}:encoder.layer.1"
    if "encoder.layer.1" not in run("features", "--model", f"hf:{model}", "--size", "32"):
        sys.exit("FAILED: features lists no encoder.layer.1 of the folder model")
    run("extract", "--images", str(images), "--store", "hf.zarr", "--feature", spec, "--size", "32", "--workers", "1")
    print(f"  ok: extract of {spec}")


def features(path: Path) -> None:
    """HOG and LBP of a fixed photo, as this install computes them, into ``path`` (.npz)."""
    import numpy as np
    import torch

    import preimage
    from preimage.pipeline.features import native

    rng = np.random.default_rng(1)
    gray = torch.from_numpy(rng.random((4, 96, 80), dtype=np.float32))
    np.savez(
        path,
        hog=preimage.hog(gray).numpy(),
        lbp=preimage.lbp(gray).numpy(),
        native=np.array(native.library() is not None),
    )


def no_compiler(other_python: str) -> None:
    import numpy as np

    not_in_checkout()
    features(HERE / "torch.npz")
    subprocess.run([other_python, __file__, "features", str(HERE / "kernels.npz")], check=True, cwd=HERE)
    ours, kernels = np.load(HERE / "torch.npz"), np.load(HERE / "kernels.npz")
    if bool(ours["native"]) or not bool(kernels["native"]):
        sys.exit(f"FAILED: kernels here {bool(ours['native'])}, in the wheel {bool(kernels['native'])}")
    for name, atol in (("hog", 1e-4), ("lbp", 1e-5)):  # the tolerances the tests hold both paths to against VLFeat
        difference = float(np.abs(ours[name] - kernels[name]).max())
        if difference > atol:
            sys.exit(f"FAILED: {name} of the torch ops differs from the kernels' by {difference} (> {atol})")
        print(f"  ok: {name} without a compiler equals the kernels' within {difference:.1e}")
    images = HERE / "photos"
    images.mkdir(exist_ok=True)
    photo(images / "a.png")
    run("invert", str(images / "a.png"), "--feature", "hog", "--out", "inverted")
    print("  ok: invert without the kernels")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["bare", "all", "explore", "no-compiler", "features"])
    parser.add_argument("argument", nargs="?")
    args = parser.parse_args()
    if args.stage == "bare":
        bare(args.argument)
    elif args.stage == "all":
        with_all()
    elif args.stage == "explore":
        explore_all()
    elif args.stage == "no-compiler":
        no_compiler(args.argument)
    else:
        features(Path(args.argument))


if __name__ == "__main__":
    main()
