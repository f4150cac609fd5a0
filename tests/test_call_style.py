"""How the project calls its own functions: never more than 4 arguments by position (a sixth positional argument is
a bug waiting for a reordered signature); read from the source, the code is not run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "train", "analysis", "cache", "preimage", "references", "bench", "tests")
MAX_POSITIONAL = 4


def _sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")}


def _variadic(node: ast.AST) -> bool:
    """Whether a definition takes ``*args`` (a CLI helper's arguments, say): any count is its calling convention."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return node.args.vararg is not None
    init = [n for n in getattr(node, "body", []) if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    return bool(init) and init[0].args.vararg is not None


def _external_names(tree: ast.Module) -> set[str]:
    """Names a file binds to modules of other packages (``np``, ``cv2``, ``da``): their functions are not ours."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if not a.name.startswith("preimage")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("preimage"):
            names |= {a.asname or a.name for a in node.names}
    return names


def test_no_call_of_our_own_functions_passes_more_than_four_arguments_by_position():
    sources = _sources()
    ours: dict[str, bool] = {}  # name -> variadic (any definition of that name)
    for tree in sources.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                ours[node.name] = ours.get(node.name, False) or _variadic(node)
    offending = []
    for path, tree in sources.items():
        external = _external_names(tree)
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or len(call.args) <= MAX_POSITIONAL:
                continue
            if any(isinstance(a, ast.Starred) for a in call.args):
                continue
            func = call.func
            if isinstance(func, ast.Attribute):
                if isinstance(func.value, ast.Name) and func.value.id in external:
                    continue
                name = func.attr
            elif isinstance(func, ast.Name):
                name = func.id
            else:
                continue
            if name in ours and not ours[name] and name not in external:
                offending.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}: {len(call.args)} by position")
    assert not offending, "\n".join(offending)
