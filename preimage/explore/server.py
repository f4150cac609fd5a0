"""The explorer's web server: one page (``static/``, every asset from the package: it works offline) and a JSON
API over :class:`.engine.Explorer`. Endpoints are plain functions, which Starlette runs in a thread pool, so a
slow request (an optimisation's start, a large upload) does not block the page; uploads are bounded in bytes and
decoded through the extractor's bounded decoding."""

from __future__ import annotations

import socket
import tempfile
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .engine import PERTURBATION_KINDS, ExploreError, Explorer

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}  # all the page needs
MAX_UPLOAD = 32 * 1024 * 1024  # bytes per uploaded photo
LOOPBACK = ("127.0.0.1", "::1", "localhost")


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
        declared = int(request.headers.get("content-length") or 0)
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

    def reconstruct(request: Request, body: dict) -> dict:
        perturbation = {
            k: v
            for k, v in (body.get("perturbation") or {}).items()
            if k in ("kind", "amount", "seed", "start", "stop", "top", "left", "size")
        }
        return explorer.reconstruct(body["photo"], body["panel"], **perturbation)

    def photo(request: Request, body: dict) -> dict:
        return explorer.crop_picture(body["photo"])

    def interpolate(request: Request, body: dict) -> dict:
        return explorer.interpolate(body["first"], body["second"], body["panel"], float(body["t"]))

    def sample(request: Request, body: dict) -> dict:
        return explorer.sample(body["panel"], int(body.get("seed", 0)))

    def optimize(request: Request, body: dict) -> dict:
        return {"job": explorer.optimize(body["photo"], body["feature"], int(body.get("steps", 200)))}

    def job(request: Request) -> JSONResponse:
        try:
            found = explorer.job(request.path_params["job"])
        except ExploreError as err:
            return JSONResponse({"error": str(err)}, status_code=404)
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
        Route("/api/photo", json_endpoint(photo), methods=["POST"]),
        Route("/api/reconstruct", json_endpoint(reconstruct), methods=["POST"]),
        Route("/api/interpolate", json_endpoint(interpolate), methods=["POST"]),
        Route("/api/sample", json_endpoint(sample), methods=["POST"]),
        Route("/api/optimize", json_endpoint(optimize), methods=["POST"]),
        Route("/api/optimize/{job}", job, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ExploreError: explore_error})
    return app


def json_endpoint(handler):
    """A JSON-in, JSON-out endpoint run in the thread pool: a missing field or a value the explorer refuses is a
    400 with the message for the page."""

    async def endpoint(request: Request) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the request's body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the request's body is not a JSON object"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(handler, request, body))
        except KeyError as err:
            return JSONResponse({"error": f"the request lacks {err}"}, status_code=400)
        except (TypeError, ValueError) as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    return endpoint


async def explore_error(request: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"error": str(err)}, status_code=400)


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
