"""The JSON body each explorer endpoint takes, declared once (pydantic, strict: ``"5"`` is not a number, NaN is not a
float, an unknown field is refused) and how a refusal reads: one line naming the field and what it accepts, never
the input itself beyond a short prefix."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .engine import PERTURBATION_KINDS

MAX_BODY = 64 * 1024  # bytes of JSON a request may send: the largest real body is under 300
MAX_ECHO = 80  # characters of user input an error may repeat

Ident = Annotated[str, Field(min_length=1, max_length=64)]  # a photo id (16 hex digits) or a store row's id
Name = Annotated[str, Field(min_length=1, max_length=200)]  # a panel's or a feature's name
Fraction = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class Perturbation(Body):
    """What ``Explorer.perturb`` takes: the kind and the parameters of every kind (the page sends them all)."""

    kind: Literal[PERTURBATION_KINDS] = "none"
    amount: Fraction = 0.5
    seed: Seed = 0
    start: Fraction = 0.0
    stop: Fraction = 1.0
    top: Fraction = 0.25
    left: Fraction = 0.25
    size: Fraction = 0.5


class PhotoRequest(Body):
    photo: Ident


class ReconstructRequest(Body):
    photo: Ident
    panel: Name
    perturbation: Perturbation | None = None


class InterpolateRequest(Body):
    first: Ident
    second: Ident
    panel: Name
    t: Fraction


class SampleRequest(Body):
    panel: Name
    seed: Seed = 0


class OptimizeRequest(Body):
    photo: Ident
    feature: Name
    steps: Annotated[int, Field(ge=1, le=2000)] = 200


class RequestError(ValueError):
    """A body that is not what its endpoint declares; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse(schema: type[Body], raw: bytes) -> Body:
    """``raw`` validated against ``schema``, or a :class:`RequestError` naming the first field that is wrong."""
    if len(raw) > MAX_BODY:
        raise RequestError(f"the request's body is over {MAX_BODY // 1024} KiB", status=413)
    try:
        return schema.model_validate_json(raw or b"null")
    except ValidationError as err:
        raise RequestError(describe(err.errors(include_url=False, include_input=False)[0])) from None


def describe(error: dict) -> str:
    """One pydantic error as ``field: what it accepts``, e.g. ``steps: should be a valid integer``."""
    where = ".".join(str(part) for part in error["loc"]) or "the request's body"
    kind, message = error["type"], error["msg"]
    if kind == "json_invalid":
        return "the request's body is not JSON"
    if kind == "model_type" and not error["loc"]:
        return "the request's body is not a JSON object"
    if kind == "missing":
        return f"the request lacks {where}"
    if kind == "extra_forbidden":
        return f"{shorten(where)}: not a field of this request"
    return f"{where}: {re.sub(r'^(Input|String|Value) should', 'should', message)}"


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` as an error may repeat it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
