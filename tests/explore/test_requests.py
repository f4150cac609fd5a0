"""The explorer's JSON API against what a hostile page could send: every body is validated against its endpoint's
declared schema (preimage/explore/requests.py) and answered with one line naming the field; bodies are bounded in
bytes before they are read; no reply repeats more than a short prefix of the input; and fuzzed bodies
(Hypothesis, against the running server) never get a 500, a traceback or a large reply, and the server stays up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("starlette", reason="preimage explore needs starlette, uvicorn and pydantic (preimage[explore])")

from preimage.explore.requests import (
    MAX_BODY,
    OptimizeRequest,
    ReconstructRequest,
    RequestError,
    SampleRequest,
    parse,
)

from .server import get, post, post_raw, send_head_only, start_server, stop_server

MAX_REPLY = 1024  # bytes: an error is one line, and a PNG is only sent for a request that succeeds
PAGE_PERTURBATION = {"kind": "dropout", "amount": 0.5, "start": 0, "stop": 1, "top": 0.25, "left": 0.25, "size": 0.5}


def refusal(schema, body) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(RequestError) as caught:
        parse(schema, raw)
    return str(caught.value)


def test_the_body_the_page_sends_is_taken_as_it_is():
    body = {"photo": "ab12", "panel": "hog", "perturbation": {**PAGE_PERTURBATION, "seed": 0}}
    parsed = parse(ReconstructRequest, json.dumps(body).encode())
    assert parsed.perturbation.kind == "dropout" and parsed.perturbation.amount == 0.5
    assert parse(OptimizeRequest, b'{"photo": "ab12", "feature": "hog"}').steps == 200


@pytest.mark.parametrize(
    ("schema", "body", "message"),
    [
        (OptimizeRequest, {"photo": "a", "feature": "hog", "steps": "5"}, "steps: should be a valid integer"),
        (OptimizeRequest, {"photo": "a", "feature": "hog", "steps": 0}, "steps: should be greater than or equal to 1"),
        (OptimizeRequest, {"photo": "a", "feature": "hog", "steps": 5.5}, "steps: should be a valid integer"),
        (SampleRequest, b'{"panel": "hog", "seed": NaN}', "seed: should be a valid integer"),
        (SampleRequest, {"panel": "hog", "seed": 10**40}, "seed: should be less than or equal to 2147483647"),
        (SampleRequest, {"panel": {"a": 1}}, "panel: should be a valid string"),
        (SampleRequest, {"panel": "hog", "colour": 1}, "colour: not a field of this request"),
        (SampleRequest, {}, "the request lacks panel"),
        (SampleRequest, [1], "the request's body is not a JSON object"),
        (SampleRequest, b"{", "the request's body is not JSON"),
        (SampleRequest, b"", "the request's body is not a JSON object"),
        (
            ReconstructRequest,
            b'{"photo": "a", "panel": "hog", "perturbation": {"amount": NaN}}',
            "perturbation.amount: should be a finite number",
        ),
        (
            ReconstructRequest,
            {"photo": "a", "panel": "hog", "perturbation": {"kind": "melt"}},
            "perturbation.kind: should be 'none', 'binarize', 'dropout', 'drop-smallest', 'channels' or 'window'",
        ),
        (ReconstructRequest, {"photo": "x" * 10**4, "panel": "hog"}, "photo: should have at most 64 characters"),
    ],
)
def test_a_body_that_is_not_its_schema_is_refused_naming_the_field(schema, body, message):
    assert refusal(schema, body) == message


def test_an_unknown_field_with_a_long_name_is_not_repeated_whole():
    assert len(refusal(SampleRequest, {"panel": "hog", "k" * 10**5: 1})) < 120


def test_a_body_over_the_bound_is_refused_before_it_is_parsed():
    with pytest.raises(RequestError) as caught:
        parse(SampleRequest, b" " * (MAX_BODY + 1))
    assert caught.value.status == 413


@pytest.fixture(scope="module")
def served():
    """The explorer as a user starts it: its URL, its process id and the ids of its built-in photos."""
    process, url, _ = start_server()
    photos = list(get(url + "api/state")[1]["photos"].values())
    panels = [panel["name"] for panel in get(url + "api/state")[1]["panels"]]
    yield url, process.pid, photos, panels
    stop_server(process)


def peak_memory(pid: int) -> int:
    """The process's peak resident memory in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_60_mb_body_is_refused_unread_and_a_long_id_is_not_echoed(served):
    url, pid, _, _ = served
    before = peak_memory(pid)
    prefix = b'{"photo": "' + b"x" * (1 << 20)
    declared = {"Content-Type": "application/json", "Content-Length": "60000000"}
    status, reply = send_head_only(url, "/api/photo", declared, prefix)
    assert (status, json.loads(reply)) == (413, {"error": "the request's body is over 64 KiB"})
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    status, reply = send_head_only(url, "/api/photo", chunked, b"%x\r\n%s\r\n" % (len(prefix), prefix))
    assert status == 413 and len(reply) < MAX_REPLY
    assert peak_memory(pid) - before < 40 * 1024 * 1024
    status, reply = post_raw(url + "api/photo", json.dumps({"photo": "y" * 60_000}).encode())
    assert status == 400 and len(reply) < MAX_REPLY and b"yyyyyyyyyy" not in reply
    status, reply = get(url + "api/optimize/" + "z" * 5000)
    assert status == 404 and len(json.dumps(reply)) < 200
    status, reply = post_raw(url + "api/photo", b"{}", {"Content-Length": "a lot"})
    assert status == 400 and len(reply) < MAX_REPLY


# -- fuzzing -----------------------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(min_size=2000, max_size=5000),
)
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner))
EDGES = [-1, 0, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -1e-308, 0.5, math.nan, math.inf, -math.inf]
HOSTILE = st.one_of(st.sampled_from(EDGES), st.sampled_from(["", "5", "0.5", "nan", " ", "../../etc/passwd"]), JUNK)

# Each endpoint's fields with a valid value, and for each field a valid rest of the body in which that field is
# read (a perturbation's seed matters to dropout, its window to a window): the targeted fuzz breaks one at a time.
PHOTO, PANEL = "<photo>", "<panel>"
VALID = {
    "photo": {"photo": PHOTO},
    "reconstruct": {"photo": PHOTO, "panel": PANEL, "perturbation": {"kind": "dropout", "amount": 0.5, "seed": 1}},
    "interpolate": {"first": PHOTO, "second": PHOTO, "panel": PANEL, "t": 0.5},
    "sample": {"panel": PANEL, "seed": 0},
    "optimize": {"photo": PHOTO, "feature": "hgo", "steps": 2},  # never a feature that runs: it takes both cores
}
KINDS = {"start": "channels", "stop": "channels", "top": "window", "left": "window", "size": "window"}
FIELDS = [(endpoint, name) for endpoint, fields in VALID.items() for name in fields] + [
    ("reconstruct", f"perturbation.{name}") for name in ("kind", "amount", "seed", *KINDS)
]


def filled(template, photo: str, panel: str):
    """A body with the running server's own photo and panel in place of their placeholders."""
    if isinstance(template, dict):
        return {k: filled(v, photo, panel) for k, v in template.items()}
    return {PHOTO: photo, PANEL: panel}.get(template, template) if isinstance(template, str) else template


def broken(endpoint: str, name: str, value, *, photo: str, panel: str) -> dict:
    """The endpoint's valid body with field ``name`` (``a.b`` inside an object) set to ``value``."""
    body = filled(VALID[endpoint], photo, panel)
    outer, _, inner = name.partition(".")
    if inner:
        body[outer] = {**body[outer], "kind": KINDS.get(inner, body[outer]["kind"]), inner: value}
    else:
        body[outer] = value
    return body


def check_answer(url: str, endpoint: str, payload) -> None:
    """The request sent as a page could send it: a 200 or a one-line 4xx, never a 500, a traceback or a large reply."""
    status, reply = post_raw(url + "api/" + endpoint, json.dumps(payload, allow_nan=True).encode())
    assert status != 500 and len(reply) < (1 << 20), (status, reply[:300])
    answer = json.loads(reply)
    if status == 200:
        assert "error" not in answer
        return
    assert 400 <= status < 500 and set(answer) == {"error"}, (status, reply[:300])
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert len(reply) < MAX_REPLY, reply[:300]


@pytest.mark.parametrize(("endpoint", "name"), FIELDS)
def test_each_field_fuzzed_alone_gets_a_one_line_4xx_never_a_500(served, endpoint, name):
    url, _, photos, panels = served

    @settings(max_examples=max(10, settings().max_examples // 4), suppress_health_check=list(HealthCheck))
    @given(HOSTILE)
    def request(value):
        check_answer(url, endpoint, broken(endpoint, name, value, photo=photos[0], panel=panels[0]))

    request()


def field_or_junk(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, valid, HOSTILE)


def whole_bodies(endpoint: str, photos: list[str], panels: list[str]) -> st.SearchStrategy:
    """Bodies with any of the endpoint's fields present, valid or not, sometimes with fields it does not take, or
    not an object at all."""
    template = filled(VALID[endpoint], photos[0], panels[0])
    choices = {"photo": st.sampled_from(photos), "first": st.sampled_from(photos), "second": st.sampled_from(photos)}
    choices["panel"] = st.sampled_from(panels)
    fields = {k: field_or_junk(choices.get(k, st.just(v))) for k, v in template.items()}
    present = st.fixed_dictionaries({}, optional=fields)
    extra = st.dictionaries(st.text(min_size=1, max_size=20), JUNK, min_size=1, max_size=2)
    return st.one_of(present, st.builds(lambda a, b: {**b, **a}, present, extra), JUNK)


@pytest.mark.parametrize("endpoint", list(VALID))
def test_fuzzed_bodies_get_a_one_line_4xx_never_a_500_and_the_server_stays_up(served, endpoint):
    url, _, photos, panels = served

    @settings(suppress_health_check=list(HealthCheck))
    @given(whole_bodies(endpoint, photos, panels))
    def request(payload):
        check_answer(url, endpoint, payload)

    request()
    assert get(url + "api/state")[0] == 200


def test_the_fuzzed_bodies_reach_the_explorer_itself_not_only_the_schema(served):
    """Valid bodies of the kinds the fuzz starts from are served for real: a reconstruction of each perturbation."""
    url, _, photos, panels = served
    for kind in ("dropout", "window", "channels"):
        body = broken("reconstruct", "perturbation.kind", kind, photo=photos[0], panel=panels[0])
        status, reply = post(url + "api/reconstruct", body)
        assert status == 200 and reply["png"].startswith("data:image/png") and not math.isnan(reply["psnr"])
