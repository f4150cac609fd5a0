"""The explorer's web server: one page (``static/``, every asset from the package: it works offline) and a JSON
API over :class:`.engine.Explorer`. Endpoints are plain functions, which Starlette runs in a thread pool, so a
slow request (an optimisation's start, a large upload) does not block the page; uploads are bounded in bytes and
decoded through the extractor's bounded decoding."""

from __future__ import annotations

import socket
import tempfile
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .engine import PERTURBATION_KINDS, ExploreError, Explorer
from .requests import (
    MAX_BODY,
    Body,
    InterpolateRequest,
    OptimizeRequest,
    PhotoRequest,
    ReconstructRequest,
    RequestError,
    SampleRequest,
    parse,
    shorten,
)

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}  # all the page needs
MAX_UPLOAD = 32 * 1024 * 1024  # bytes per uploaded photo
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_MESSAGE = 600  # characters of an error the page is sent: an id or name in it is bounded by its schema already


def asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


MIB = 1024 * 1024


def create_app(explorer: Explorer, max_upload: int = MAX_UPLOAD) -> Starlette:
    """The page and its API over ``explorer``."""

    def page(request: Request) -> Response:
        return Response(asset("index.html"), media_type=STATIC["index.html"])

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:  # a fixed list: no route reads any other file
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(asset(name), media_type=STATIC[name])

    def state(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "panels": [panel.describe() for panel in explorer.panels.values()],
                "photos": explorer.builtin(),
                "store_photos": explorer.store_photos(),
                "store": explorer.store is not None,
                "perturbations": list(PERTURBATION_KINDS),
                "max_upload": max_upload,
            }
        )

    async def upload(request: Request) -> JSONResponse:
        name = Path(request.headers.get("x-filename", "upload")).name[:200] or "upload"
        try:
            declared = declared_length(request)
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        if declared > max_upload:
            return too_large(name, declared, max_upload)
        with tempfile.NamedTemporaryFile(prefix="preimage-explore-", suffix=Path(name).suffix[:10]) as tmp:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_upload:
                    return too_large(name, received, max_upload)
                tmp.write(chunk)
            tmp.flush()
            from starlette.concurrency import run_in_threadpool

            ident = await run_in_threadpool(explorer.add_file, tmp.name, name)
        return JSONResponse({"id": ident, "name": name})

    def reconstruct(body: ReconstructRequest) -> dict:
        perturbation = body.perturbation.model_dump() if body.perturbation else {}
        return explorer.reconstruct(body.photo, body.panel, **perturbation)

    def photo(body: PhotoRequest) -> dict:
        return explorer.crop_picture(body.photo)

    def interpolate(body: InterpolateRequest) -> dict:
        return explorer.interpolate(body.first, body.second, body.panel, body.t)

    def sample(body: SampleRequest) -> dict:
        return explorer.sample(body.panel, body.seed)

    def optimize(body: OptimizeRequest) -> dict:
        return {"job": explorer.optimize(body.photo, body.feature, body.steps)}

    def job(request: Request) -> JSONResponse:
        try:
            found = explorer.job(request.path_params["job"])
        except ExploreError as err:
            return JSONResponse({"error": shorten(str(err), MAX_MESSAGE)}, status_code=404)
        if request.method == "DELETE":
            found.stop.set()
        return JSONResponse(
            {
                "feature": found.feature,
                "step": found.step,
                "total": found.total,
                "done": found.done,
                "error": found.error,
                "png": found.picture,
                "stopped": found.stopped,
                "relative_error": found.relative_error,
            }
        )

    routes = [
        Route("/", page),
        Route("/static/{name:path}", static),
        Route("/api/state", state),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/photo", json_endpoint(photo, PhotoRequest), methods=["POST"]),
        Route("/api/reconstruct", json_endpoint(reconstruct, ReconstructRequest), methods=["POST"]),
        Route("/api/interpolate", json_endpoint(interpolate, InterpolateRequest), methods=["POST"]),
        Route("/api/sample", json_endpoint(sample, SampleRequest), methods=["POST"]),
        Route("/api/optimize", json_endpoint(optimize, OptimizeRequest), methods=["POST"]),
        Route("/api/optimize/{job}", job, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ExploreError: explore_error})
    return app


def json_endpoint(handler: Callable[[Body], dict], schema: type[Body]):
    """A JSON-in, JSON-out endpoint run in the thread pool: the body is read up to ``MAX_BODY`` bytes and validated
    against ``schema`` before ``handler`` sees it; a body that is not what it declares, or a request the explorer
    refuses, is a 4xx with one line for the page; any other failure is the explorer's (500, traceback in its log)."""

    async def endpoint(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        try:
            body = parse(schema, await read_bounded(request, MAX_BODY))
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        try:
            return JSONResponse(await run_in_threadpool(handler, body))
        except ExploreError as err:  # a valid request the explorer cannot serve (no such photo, no store, ...)
            return JSONResponse({"error": shorten(str(err), MAX_MESSAGE)}, status_code=400)
        except Exception as err:  # past the schema, anything else is the explorer's fault: a 500, logged here
            traceback.print_exc()
            return JSONResponse({"error": f"the explorer failed ({type(err).__name__}); see its log"}, status_code=500)

    return endpoint


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is over ``limit`` bytes: declared or received."""
    if declared_length(request) > limit:
        raise RequestError(f"the request's body is over {limit // 1024} KiB", status=413)
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise RequestError(f"the request's body is over {limit // 1024} KiB", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def declared_length(request: Request) -> int:
    """The body's length as its Content-Length header declares it (0 when absent)."""
    declared = request.headers.get("content-length", "0").strip()
    if not declared.isdigit():
        raise RequestError("the request's Content-Length is not a number of bytes")
    return int(declared)


async def explore_error(request: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"error": shorten(str(err), MAX_MESSAGE)}, status_code=400)


def too_large(name: str, size: int, limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": f"{name}: {size / MIB:.1f} MiB or more, over the {limit / MIB:.0f} MiB an upload "
            "may take (start preimage explore with --max-upload-mb to allow more)"
        },
        status_code=413,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), so the URL printed is the one served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on an open socket until interrupted."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
