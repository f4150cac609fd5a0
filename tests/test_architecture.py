"""The architecture contract (pyproject's [tool.importlinter]) and what importing the light entry points costs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where each package's source lies: pyproject maps the top-level folders into preimage.*
PACKAGES = {
    "": ROOT / "preimage",
    "pipeline": ROOT / "pipeline",
    "train": ROOT / "train",
    "analysis": ROOT / "analysis",
    "cache": ROOT / "cache",
}


def installed_layout(target: Path) -> Path:
    """A copy of the package's Python files laid out as it installs (preimage/pipeline/..., preimage/train/...),
    which import-linter can walk; the folders in place are mapped by setuptools, which it cannot follow."""
    for sub, source in PACKAGES.items():
        for path in source.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            copy = target / "preimage" / sub / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_layer_contract_holds(tmp_path):
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    tree = installed_layout(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", "pyproject.toml"],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_the_layout_copy_is_complete(tmp_path):
    """Every package pyproject installs is in the copy the contract is checked on (nothing escapes the check)."""
    tree = installed_layout(tmp_path)
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for name in packages:
        assert (tree / name.replace(".", "/") / "__init__.py").is_file(), name


def test_loading_a_shipped_decoder_imports_neither_dask_click_nor_cv2():
    code = (
        "import sys, preimage; preimage.load_decoder('hog'); "
        "print(sorted({'dask', 'distributed', 'click', 'cv2'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def _strongly_connected(graph) -> list[list[str]]:
    """The import cycles of a grimp graph: its strongly connected components of more than one module (Tarjan's
    algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_grimp_finds_no_import_cycle_in_the_installed_package(tmp_path):
    """Function-level imports included (grimp reads them): a cycle hidden inside a function is still a cycle."""
    pytest.importorskip("grimp", reason="grimp comes with import-linter, in the dev extra")
    tree = installed_layout(tmp_path)
    code = (
        "import sys, json, grimp; sys.path.insert(0, sys.argv[1]); g = grimp.build_graph('preimage', cache_dir=None); "
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tree)], capture_output=True, text=True, cwd=tree)
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    edges = json.loads(result.stdout)

    class Graph:
        modules = list(edges)

        @staticmethod
        def find_modules_directly_imported_by(module):
            return edges[module]

    assert "preimage.pipeline.names" in edges and len(edges) > 100
    assert _strongly_connected(Graph) == []
    edges["preimage.pipeline.names"] = ["preimage.pipeline.lookup"]  # the check itself finds a cycle put in
    assert any({"preimage.pipeline.names", "preimage.pipeline.lookup"} <= set(c) for c in _strongly_connected(Graph))


# Modules imported inside a function rather than at the top of a module, and why: a dependency that is heavy or
# optional (an extra), so that what does not need it does not load it. Anything else is imported at the top.
LAZY_DEPENDENCIES = {
    "torch": "import preimage and the command line's start load no torch",
    "numpy": "the command line's start loads no numpy",
    "cv2": "OpenCV only where an image is encoded or resized: load_decoder imports none",
    "dask": "the cluster: extraction alone",
    "distributed": "the cluster: extraction alone",
    "fsspec": "object stores (the s3 extra)",
    "zarr": "the store's backend: only when a store is opened",
    "h5py": "HDF5 sources: only when one is read",
    "huggingface_hub": "Hugging Face models (the models extra)",
    "safetensors": "a Hugging Face folder's weights: only when one is read",
    "skimage": "scikit-image: its photos (demo) and SSIM, only when used",
    "starlette": "the explorer (the explore extra)",
    "uvicorn": "the explorer (the explore extra)",
    "vlsift": "the SIFT keypoint detector, only when SIFT is computed",
    "onnx": "preimage make-model (the convert extra)",
    "onnxruntime": "preimage make-model (the convert extra)",
    "transformers": "Hugging Face models (the models extra)",
}
# The command line imports the library only when a command runs, so that preimage --help starts at once.
LAZY_FRONT = ("preimage.cli", "preimage.commands")
# Project modules a library module imports inside a function, and why (the same reasons: heavy or optional).
LAZY_PROJECT = {
    ("preimage.pipeline.identity", "preimage.cache.store"): "zarr: the zoo's listing reads identities, opens no store",
    ("preimage.train.models.zoo", "preimage.pipeline.features"): "torch: the zoo's listing loads no model",
}


def _function_level_imports() -> list[tuple[str, str]]:
    """(importing module, imported module) of every import inside a function of the package, as installed."""
    found = []
    for sub, source in PACKAGES.items():
        for path in source.rglob("*.py"):
            parts = ["preimage", *filter(None, sub.split("/")), *path.relative_to(source).with_suffix("").parts]
            package = parts if path.name == "__init__.py" else parts[:-1]
            module = ".".join(parts[:-1] if path.name == "__init__.py" else parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        found += [(module, alias.name) for alias in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        base = package[: len(package) - inner.level + 1] if inner.level else []
                        found.append((module, ".".join([*base, *filter(None, [inner.module])])))
    return found


def test_imports_inside_functions_are_only_for_heavy_or_optional_dependencies():
    found = _function_level_imports()
    assert ("preimage.train.models.zoo", "preimage.pipeline.features") in found  # the scan reads relative imports
    unlisted = sorted(
        f"{module} imports {imported}"
        for module, imported in set(found)
        if (not imported.startswith("preimage") and imported.split(".")[0] not in LAZY_DEPENDENCIES)
        or (
            imported.startswith("preimage")
            and not module.startswith(LAZY_FRONT)
            and (module, imported) not in LAZY_PROJECT
        )
    )
    assert not unlisted, "import these at the top of the module, or list them here with the reason:\n" + "\n".join(
        unlisted
    )
    stale = [pair for pair in LAZY_PROJECT if pair not in found]
    assert not stale, f"listed but no longer imported inside a function: {stale}"
