"""A user's zoo folders (issue 59, item 4): a run exported as the shipped decoders are (references/zoo_export.py
--out DIR) is found by name with no training by zoo, invert, analyze, the explorer and the Python API, from --zoo
DIR or the PREIMAGE_ZOO environment variable, before the decoder that ships under the same name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from preimage.cli import main
from preimage.commands.options import ZOO_ENV as CLI_ZOO_ENV
from preimage.train.models import zoo
from preimage.train.models.locate import locate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def built(run, tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """(store, a zoo folder holding the run exported as a shipped decoder, the exported file, the images)."""
    store, folder, images = run
    out = tmp_path_factory.mktemp("zoo")
    export = [sys.executable, str(ROOT / "references" / "zoo_export.py"), "--store", str(store), "--out", str(out)]
    result = subprocess.run([*export, str(folder)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return store, out, out / "hog.safetensors", images


def test_a_built_zoo_is_listed_before_the_shipped_decoders_with_its_scores(built, monkeypatch):
    _, folder, path, _ = built
    header = json.loads(zoo.tensorfile.metadata(path)[zoo.tensorfile.HEADER])
    listed = CliRunner().invoke(main, ["zoo", "--zoo", str(folder)])
    assert listed.exit_code == 0, listed.output
    assert f"built: {folder.resolve()}" in listed.output and "shipped with preimage" in listed.output
    first = listed.output.split("shipped with preimage")[0]
    assert f"{header['card']['heldout']['normalised_error']:.3f}" in first  # its own card's held-out error
    card = CliRunner().invoke(main, ["zoo", "hog", "--zoo", str(folder)])
    assert card.output.strip() == path.with_suffix(".md").read_text().strip()
    assert "built" not in CliRunner().invoke(main, ["zoo"]).output  # without it: what ships alone
    monkeypatch.setenv(zoo.ZOO_ENV, os.pathsep.join([str(folder), str(folder)]))  # the variable, as PATH is written
    assert zoo.list_zoo()[0].path == path.resolve() and not zoo.list_zoo()[0].builtin
    assert CLI_ZOO_ENV == zoo.ZOO_ENV  # the variable the --zoo option sets is the one the zoo reads
    assert [e.path for e in zoo.list_zoo() if e.builtin] == [e.path for e in zoo.list_shipped()]
    monkeypatch.setenv(zoo.ZOO_ENV, str(folder / "missing"))
    with pytest.raises(FileNotFoundError, match="no such zoo folder"):
        zoo.list_zoo()


def test_invert_analyze_and_the_api_find_a_built_decoder_by_name(built, tmp_path, monkeypatch):
    store, folder, path, images = built
    photo = images / "03.png"
    out = tmp_path / "mine"
    inverted = CliRunner().invoke(
        main, ["invert", str(photo), "--feature", "hog", "--zoo", str(folder), "--out", str(out)]
    )
    assert inverted.exit_code == 0 and f"decoder: {path.resolve()}" in inverted.output, inverted.output
    shipped = CliRunner().invoke(main, ["invert", str(photo), "--feature", "hog", "--out", str(tmp_path / "shipped")])
    assert f"decoder: {zoo.ZOO_DIR / 'hog.safetensors'}" in shipped.output  # --zoo is for that command alone
    assert zoo.ZOO_ENV not in os.environ
    scored = CliRunner().invoke(
        main, ["analyze", "error", "--store", str(store), "--decoder", "hog", "--zoo", str(folder)]
    )
    assert scored.exit_code == 0, scored.output
    card = json.loads(zoo.tensorfile.metadata(path)[zoo.tensorfile.HEADER])["card"]["heldout"]
    assert str(path.resolve()) in scored.output  # the built decoder, scored on its store's held-out rows
    assert f"image space): {card['normalised_error']:.4f}" in scored.output  # its card's number, recomputed
    image = torch.rand(1, 3, 40, 40)
    import preimage

    mine, theirs = preimage.invert(image, "hog", zoos=[folder]), preimage.invert(image, "hog")
    assert mine.shape == (1, 3, 32, 32) and theirs.shape == (1, 3, 128, 128)  # at its store's side, and the shipped
    monkeypatch.setenv(zoo.ZOO_ENV, str(folder))
    assert locate("hog").path == path.resolve() and torch.equal(preimage.invert(image, "hog"), mine)


def test_the_explorer_shows_a_built_decoder_beside_the_shipped_one(built, monkeypatch):
    pytest.importorskip("starlette", reason="the explore extra")
    from preimage.explore.engine import Explorer

    _, folder, _, _ = built
    monkeypatch.setenv(zoo.ZOO_ENV, str(folder))
    explorer = Explorer()
    assert "hog" in explorer.panels and f"hog (zoo {folder.name})" in explorer.panels
    mine, shipped = explorer.panels[f"hog (zoo {folder.name})"], explorer.panels["hog"]
    assert (mine.model.config.target_size, shipped.model.config.target_size) == (16, 64)
