"""What the explorer page computes, without the web: decoders loaded once, photos registered by id, features
computed once per photo (one forward pass per model for all its layers), and reconstructions of those features as
they are, perturbed, blended with another photo's or drawn from a store's histograms; the optimisation as a job
that reports its progress and can be stopped. Every computation is the library's own."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..analysis.interpolate import blend
from ..analysis.perturb import binarize, drop_smallest, dropout, keep_channels, keep_window
from ..analysis.runs import heldout_rows
from ..analysis.sample import histograms, sample_histograms
from ..analysis.studies import feature_array
from ..cache.store import FeatureStore, StoreError
from ..pipeline.backbones.weights import WeightsUnavailable
from ..pipeline.contract import DRAFT_MIN_SIDE, FeatureJob, compute_features
from ..pipeline.decode import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from ..pipeline.identity import Identity, IdentityError
from ..pipeline.images import center_square, sample_photos, to_float
from ..pipeline.lookup import check_store, find_model
from ..train.inversion.invert import decoder_job
from ..train.inversion.optimize import OptimizeConfig, differentiable_target, with_defaults
from ..train.inversion.optimize import optimize as run
from ..train.models import zoo
from ..train.models.loading import load_decoder
from ..train.models.locate import locate
from ..train.scoring.metrics import mean_pairwise_distance, normalised_error, psnr, ssim, upsample_to

MAX_PHOTOS = 64  # photos kept in memory (least recently used go first)
PERTURBATION_KINDS = ("none", "binarize", "dropout", "drop-smallest", "channels", "window")


class ExploreError(ValueError):
    """A request the explorer cannot serve: the message is shown on the page."""


@dataclass
class Panel:
    """One decoder on the page: its name, representation, loss, the feature job it takes and the model."""

    name: str
    feature: str
    loss: str
    job: FeatureJob
    image_size: int
    dtype: str
    model: torch.nn.Module
    identity: Identity  # what the features it takes are (a store's must agree for samples)

    @property
    def channels_last(self) -> bool:
        return self.model.config.channels_last

    @property
    def label(self) -> str:
        """What the page calls it: its name, a shipped name's ``+loss`` written ``(loss)``; never a local path."""
        if self.loss == zoo.PIXEL:
            return self.name
        return f"{self.name.removesuffix('+' + self.loss)} ({self.loss})"

    def describe(self) -> dict:
        shape = list(self.model.config.input_shape)
        return {
            "name": self.name,
            "label": self.label,
            "feature": self.feature,
            "loss": self.loss,
            "shape": shape,
            "spatial": len(shape) == 3,
        }


@dataclass
class Job:
    """An optimisation running in a thread: its progress, its result or error, and a flag that stops it."""

    feature: str
    total: int = 0
    step: int = 0
    done: bool = False
    error: str = ""
    picture: str = ""
    relative_error: float | None = None
    stopped: bool = False  # stopped by the user: the result is the pre-image at ``step``
    stop: threading.Event = field(default_factory=threading.Event)


class Explorer:
    """The explorer's state: decoders (every shipped one, plus ``decoders``: run folders or checkpoints), photos
    by id, their features, the store's histograms and the running optimisations."""

    def __init__(
        self,
        decoders: list[str | os.PathLike] = (),
        store: str | os.PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        models: list[str] = (),
    ) -> None:
        self.max_pixels = max_pixels
        self.panels: dict[str, Panel] = {}
        self.models, self._hashes = tuple(models), {}  # where models from a source are; each hashed once
        for entry in zoo.list_zoo():  # a decoder of a model from a source shows where its model is given
            if not entry.identity.from_source or self._model_given(entry.identity):
                built = "" if entry.builtin else f" (zoo {entry.path.parent.name})"  # never mistaken for a shipped one
                self._add_panel(entry.name + built, entry.path)
        for path in decoders:
            located = locate(path)
            if located.method != "decoder" or located.autoencoder:
                raise ExploreError(f"{path}: the explorer shows decoders of stored features, not this")
            name = f"{Path(path).name} (run)"  # never mistaken for a shipped decoder of the same name
            self._add_panel(name if name not in self.panels else f"{path} (run)", located)
        if not self.panels:
            raise ExploreError("no decoder to show: none ships with this installation and none was given")
        self.store = None
        if store is not None:
            self.store = FeatureStore.open(store)
        self.sample_photos = sample_photos()  # scikit-image's, decoded once: offered on every page load
        self.photos: OrderedDict[str, np.ndarray] = OrderedDict()  # id -> uint8 RGB image as decoded
        self.names: dict[str, str] = {}  # id -> what the user called it
        self._features: dict[tuple[str, str], torch.Tensor] = {}
        self._histograms: dict[str, object] = {}
        self._lock = threading.Lock()
        self._normaliser: dict[int, float] = {}
        self.jobs: dict[str, Job] = {}
        self._optimising = threading.Semaphore(1)  # one optimisation at a time: it takes both cores

    def _model_given(self, decoder: Identity) -> bool:
        """Whether one of the --model folders holds the model ``decoder`` was trained on."""
        try:
            return bool(self.models) and find_model(decoder, self.models, hashes=self._hashes) is not decoder
        except IdentityError:
            return False

    def _add_panel(self, name: str, source) -> None:
        located = locate(source)
        models = self.models if self._model_given(located.identity) else ()  # others: where it was trained
        try:
            job, image_size, dtype = decoder_job(located, hashes=self._hashes, models=models)
        except IdentityError as err:
            raise ExploreError(f"{name}: {err}") from None
        config = located.settings() or {}
        self.panels[name] = Panel(
            name=name,
            feature=job.name,
            loss=config.get("loss", zoo.PIXEL),
            job=job,
            image_size=image_size,
            dtype=dtype,
            model=load_decoder(located).eval(),
            identity=located.identity,
        )

    # -- photos ----------------------------------------------------------------------------------------------

    def add_image(self, image: np.ndarray, name: str) -> str:
        """Register a decoded uint8 RGB photo; returns its id (the same photo, the same id)."""
        ident = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()[:16]
        with self._lock:
            self.photos[ident] = image
            self.photos.move_to_end(ident)
            self.names[ident] = name
            while len(self.photos) > MAX_PHOTOS:
                old, _ = self.photos.popitem(last=False)
                self._features = {k: v for k, v in self._features.items() if k[0] != old}
        return ident

    def add_file(self, path: str | os.PathLike, name: str) -> str:
        """Decode an uploaded file (bounded: ``max_pixels``, checked from its header first) and register it."""

        try:
            image = read_image(path, DRAFT_MIN_SIDE, self.max_pixels)
        except ImageReadError as err:
            raise ExploreError(f"{name}: {err}") from None
        return self.add_image(image, name)

    def builtin(self) -> dict[str, str]:
        """scikit-image's photos, registered: name -> id."""
        return {name: self.add_image(photo, name) for name, photo in self.sample_photos.items()}

    def warm_up(self) -> dict[str, str]:
        """Every model's first pass (on scikit-image's first photo), so that the user's first photo is as fast as the
        next. A panel whose model has no weights here (offline, none cached) is dropped rather than failing the
        page: returns the dropped panels with the reason."""

        first = next(iter(self.builtin().values()))
        try:
            self.features(first, next(iter(self.panels)))  # every panel's model at once
            return {}
        except WeightsUnavailable:
            pass
        image, dropped = self.photos[first], {}
        for name, panel in list(self.panels.items()):  # only when a model lacks weights: find which, one by one
            sized = {size: center_square(image, size)[None] for size in (panel.job.input_size, panel.image_size)}
            try:
                with torch.inference_mode():
                    compute_features([panel.job], sized)
            except WeightsUnavailable as err:
                dropped[name] = str(err).splitlines()[0]
                del self.panels[name]
        if not self.panels:
            reason = next(iter(dropped.values()))
            raise ExploreError(f"no decoder to show: none has its model's weights here ({reason})")
        self.features(first, next(iter(self.panels)))
        return dropped

    def store_photos(self, n: int = 8) -> dict[str, str]:
        """The first ``n`` held-out rows of the store, registered: id string -> id."""
        if self.store is None:
            return {}

        rows = heldout_rows(self.store, 0.1, n)
        ids = self.store.group["ids"][:]
        return {
            str(ids[r]): self.add_image(self.store.read_rows("images", int(r), int(r) + 1)[0], str(ids[r]))
            for r in rows
        }

    def photo(self, ident: str) -> np.ndarray:
        try:
            return self.photos[ident]
        except KeyError:
            raise ExploreError(
                f"no photo {ident!r} here (the server keeps the last {MAX_PHOTOS}); add it again"
            ) from None

    def panel(self, name: str) -> Panel:
        try:
            return self.panels[name]
        except KeyError:
            raise ExploreError(f"no decoder {name!r} here; the page shows {', '.join(self.panels)}") from None

    # -- features and reconstructions --------------------------------------------------------------------------

    def features(self, ident: str, name: str) -> torch.Tensor:
        """The features of photo ``ident`` that panel ``name`` takes (1, ...), computed as a store computes them;
        the first request of a photo computes every panel's at once."""
        key = (ident, self.panel(name).job.name)
        if key not in self._features:
            image = self.photo(ident)
            jobs = {p.job.name: p for p in self.panels.values()}
            sizes = {p.job.input_size for p in jobs.values()} | {p.image_size for p in jobs.values()}
            sized = {size: center_square(image, size)[None] for size in sizes}
            with torch.inference_mode():
                values = compute_features([p.job for p in jobs.values()], sized)
            with self._lock:
                for feature, panel in jobs.items():
                    self._features[(ident, feature)] = torch.from_numpy(values[feature].astype(panel.dtype)).float()
        return self._features[key]

    def crop(self, ident: str, name: str) -> torch.Tensor:
        """The photo as the panel's store holds it (1, 3, S, S) in [0, 1]: what its reconstruction is scored on."""
        return to_float(center_square(self.photo(ident), self.panel(name).image_size)[None])

    def crop_picture(self, ident: str) -> dict:
        """The photo as the first panel's store crops it, as a PNG data URL."""
        return {"png": png_data_url(self.crop(ident, next(iter(self.panels)))[0])}

    def perturb(
        self,
        x: torch.Tensor,
        name: str,
        kind: str = "none",
        amount: float = 0.5,
        seed: int = 0,
        start: float = 0.0,
        stop: float = 1.0,
        top: float = 0.25,
        left: float = 0.25,
        size: float = 0.5,
    ) -> torch.Tensor:
        """The paper's perturbations (analysis/perturb.py) of a panel's features."""
        if kind not in PERTURBATION_KINDS:
            raise ExploreError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATION_KINDS)}")
        if not 0 <= amount <= 1:
            raise ExploreError(f"the amount is a fraction in [0, 1]; got {amount}")
        last = self.panel(name).channels_last
        if kind == "binarize":
            return binarize(x)
        if kind == "dropout":
            return dropout(x, amount, torch.Generator().manual_seed(int(seed)))
        if kind == "drop-smallest":
            return drop_smallest(x, amount)
        if kind == "channels":
            return keep_channels(x, start, stop, last)
        if kind == "window":
            if x.ndim != 4:
                what = "several layers read together" if self.panel(name).model.config.parts else "a vector"
                raise ExploreError(f"{name}: a window needs one layer's spatial features, these are {what}")
            return keep_window(x, top, left=left, size=size, channels_last=last)
        return x

    @torch.no_grad()
    def decode(self, name: str, features: torch.Tensor) -> torch.Tensor:
        return self.panel(name).model(features).clamp(0, 1)

    def reconstruct(self, ident: str, name: str, **perturbation) -> dict:
        """A panel's reconstruction of a photo (perturbed as asked), as a PNG data URL, with its scores."""
        x = self.perturb(self.features(ident, name), name, **perturbation)
        return self.picture(self.decode(name, x), self.crop(ident, name))

    def interpolate(self, first: str, second: str, name: str, t: float) -> dict:
        """The reconstruction at ``t`` on the line from one photo's features to another's."""
        try:
            x = blend(self.features(first, name), self.features(second, name), float(t))
        except ValueError as err:
            raise ExploreError(str(err)) from None
        return self.picture(self.decode(name, x), None)

    def sample(self, name: str, seed: int = 0, vectors: int = 1000) -> dict:
        """A reconstruction of features drawn from the store's per-dimension histograms (``analyze sample``)."""
        if self.store is None:
            raise ExploreError("random samples come from a store's histograms: start the explorer with --store S")
        panel = self.panel(name)

        try:
            feature = check_store(self.store, panel.identity)
        except StoreError:
            held = ", ".join(self.store.feature_names())
            raise ExploreError(f"the store holds no {panel.feature}; it holds {held}") from None
        except IdentityError as err:
            raise ExploreError(f"{name}: no samples from this store: {err}") from None

        if feature not in self._histograms:
            array = feature_array(self.store, feature)
            self._histograms[feature] = histograms(array[: min(vectors, array.shape[0])])
        x = sample_histograms(self._histograms[feature], 1, 2.0, int(seed))
        return self.picture(self.decode(name, x.reshape(1, *panel.model.config.input_shape)), None)

    def picture(self, recon: torch.Tensor, target: torch.Tensor | None) -> dict:
        """A reconstruction (1, 3, T, T) as a PNG data URL at the photo's side, with its scores against ``target``."""
        size = target.shape[-1] if target is not None else 128
        shown = upsample_to(recon, size)
        out = {"png": png_data_url(shown[0])}
        if target is not None:
            out.update(
                normalised_error=normalised_error(shown, target, self.normaliser(size)),
                psnr=psnr(shown, target),
                ssim=ssim(shown, target),
            )
        return out

    def normaliser(self, size: int) -> float:
        """The normalised error's denominator for one photo: the mean distance between scikit-image's photos'
        crops at this size (the paper divides by the distance between the test images)."""
        if size not in self._normaliser:
            crops = np.stack([center_square(p, size) for p in self.sample_photos.values()])
            self._normaliser[size] = mean_pairwise_distance(to_float(crops))
        return self._normaliser[size]

    # -- the optimisation -------------------------------------------------------------------------------------

    def optimize(self, ident: str, feature: str, steps: int = 200) -> str:
        """Start Mahendran & Vedaldi's inversion of photo ``ident``'s ``feature`` in a thread; returns the job's id.
        One runs at a time (it takes every core): a second is refused while it runs."""

        image = self.photo(ident)
        if not 1 <= steps <= 2000:
            raise ExploreError(f"steps between 1 and 2000; got {steps}")
        if not self._optimising.acquire(blocking=False):
            raise ExploreError("an optimisation is running already; stop it or wait for it")
        try:
            target = differentiable_target(feature, device="cpu")
        except (ValueError, KeyError) as err:
            self._optimising.release()
            raise ExploreError(str(err)) from None
        job = Job(feature, total=steps)
        ident_job = uuid.uuid4().hex[:12]
        self.jobs[ident_job] = job

        def progress(step: int, total: int, value: float) -> bool:
            job.step, job.total = step, total
            return not job.stop.is_set()  # stopped: the pre-image so far is the result

        def work() -> None:
            try:
                prepared = target.prepare(to_float(center_square(image, target.size)[None]))
                with torch.no_grad():
                    phi0 = target.phi(prepared.to(target.device))
                result = run(target, phi0, with_defaults(OptimizeConfig(), steps=steps), progress)
                job.picture = png_data_url(result.images[0, 0].expand(3, -1, -1).clamp(0, 1))
                job.relative_error = float(result.relative_error[0, 0])
                job.stopped = job.stop.is_set()
            except Exception as err:  # shown on the page; the server goes on
                job.error = f"{type(err).__name__}: {err}"
            finally:
                job.done = True
                self._optimising.release()

        threading.Thread(target=work, daemon=True, name=f"optimise-{ident_job}").start()
        return ident_job

    def job(self, ident: str) -> Job:
        try:
            return self.jobs[ident]
        except KeyError:
            raise ExploreError(f"no optimisation {ident[:40]!r}") from None


def png_data_url(image: torch.Tensor) -> str:
    """An image (3, H, W) in [0, 1] as a ``data:image/png`` URL (what the page shows and downloads)."""
    rgb = (image.detach().float().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ExploreError("could not encode the picture")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()
