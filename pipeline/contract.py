"""The contract "compute exactly as the store did": what a store records of each feature (:class:`FeatureJob`,
the crop recipe) and the one function that computes features from crops, used by extraction, training's
augmentation and inversion alike. Free of dask and click."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..runtime.progress import StepTimer
from .backbones import RANDOM_WEIGHTS
from .decode import DECODE_RECIPE
from .features import Representation, expand_specs, get_representation
from .identity import JOB_FIELDS
from .images import to_float

EXTRACTOR_VERSION = 1  # bump when an extractor's output changes, so old stores are refused, not mixed
DRAFT_MIN_SIDE = 1024  # big JPEGs decode at a reduced scale, never below this side (same for every feature)


@dataclass(frozen=True)
class FeatureJob:
    """One representation to compute: where it goes and what input it takes."""

    name: str  # 'hog', 'alexnet:conv3'
    input: str  # 'gray' | 'rgb'
    input_size: int
    params: dict
    weights: str | None = None  # an explicit weights file for a backbone
    weights_sha256: str | None = None

    @property
    def backbone(self) -> str | None:
        return self.params.get("backbone")

    @property
    def representation(self) -> Representation:
        params = {} if self.backbone else self.params
        return get_representation(self.name, **params)

    @classmethod
    def from_attrs(cls, attrs: dict, weights: str | None = None) -> FeatureJob:
        """The job that computed a stored feature, from the array's attributes (to compute it again)."""
        if attrs.get("extractor_version") != EXTRACTOR_VERSION:
            raise ValueError(
                f"{attrs.get('representation')} was computed by extractor version {attrs.get('extractor_version')}; "
                f"this preimage computes version {EXTRACTOR_VERSION}"
            )
        source = attrs["input"]
        if str(attrs.get("weights", "")).startswith("random"):
            weights = RANDOM_WEIGHTS
        return cls(
            attrs["representation"],
            source["color"],
            source["size"],
            attrs["params"],
            weights,
            attrs.get("weights_sha256"),
        )

    def attrs(self) -> dict:
        """What the store records with the array, and what must match to add to it (a model's random weights
        are said so, beside their hash)."""
        values = {
            "representation": self.name,
            "extractor_version": EXTRACTOR_VERSION,
            "input": {"color": self.input, "size": self.input_size, "range": "[0, 1]"},
            "params": self.params,
            "weights_sha256": self.weights_sha256,
        }
        attrs = {field: values[field] for field in JOB_FIELDS}  # what identity compares: one list of fields
        if self.backbone is not None and self.weights == RANDOM_WEIGHTS:
            attrs["weights"] = "random initialisation (seed 0)"
        return attrs


def plan_jobs(specs: str, image_size: int, weights: str | None = None, dtype: str = "float32") -> list[FeatureJob]:
    """Feature jobs for a comma-separated spec list; each model is loaded once here to fix its weights hash (and to
    fail here, not on the workers, when its weights lack a layer)."""
    jobs = []
    modules: dict[tuple, torch.nn.Module] = {}
    for name in expand_specs(specs):
        rep = get_representation(name)
        if rep.module_key not in modules:
            modules[rep.module_key] = rep.load(weights)
        module = modules[rep.module_key]
        rep.check(module)
        jobs.append(
            FeatureJob(
                name,
                rep.input,
                input_size=rep.input_size or image_size,
                params=rep.params,
                weights=weights,
                weights_sha256=rep.weights_sha256(module),
            )
        )
    if not jobs:
        raise ValueError("no representation asked for; e.g. --features hog,lbp,sift,alexnet:conv1-conv5")
    if np.dtype(dtype) not in (np.float32, np.float16):
        raise ValueError(f"features are stored as float32 or float16, not {dtype}")
    return jobs


def recipe(image_size: int) -> dict:
    """The crop/resize recipe recorded in a store."""
    return {
        "crop": "centre square (the shorter side)",
        "resize": "cv2 INTER_AREA when shrinking, INTER_CUBIC when enlarging",
        "image_size": image_size,
        "gray": "MATLAB rgb2gray weights (0.2989, 0.5870, 0.1140) on [0, 1] floats",
        "draft_min_side": DRAFT_MIN_SIDE,
        "decode": DECODE_RECIPE,
    }


def stored_row_shape(name: str, input_size: int) -> tuple[int, ...]:
    """One row of a representation as stored: CNN maps as torch gives them (C, H, W), grids as (H, W, C)."""
    return get_representation(name).stored_shape(input_size)


_MODULES: dict[tuple, torch.nn.Module] = {}


def _module(rep: Representation, weights: str | None, sha256: str | None) -> torch.nn.Module:
    """One loaded module per process for each group (a model's layers share it); a model's weights must be those
    the client planned with."""
    key = (rep.module_key, weights, sha256)
    if key not in _MODULES:
        module = rep.load(weights).eval()
        if sha256 is not None and rep.weights_sha256(module) != sha256:
            raise RuntimeError(
                f"{rep.group}: this worker found other weights ({module.weights.source}, sha256 "
                f"{module.weights.sha256[:12]}) than the client ({sha256[:12]}); give every machine the same file "
                "with --weights"
            )
        _MODULES[key] = module
    return _MODULES[key]


def model_weights_sha256(spec: str, weights: str | None = None) -> str | None:
    """The hash of the weights that the model of ``spec`` loads (None for a hand-crafted representation): what
    identifies a model from a source wherever its folder is (``identity``)."""
    rep = get_representation(spec)
    return rep.weights_sha256(_module(rep, weights, None))


def compute_features(
    jobs: list[FeatureJob], batches: dict[int, np.ndarray], timer: StepTimer | None = None
) -> dict[str, np.ndarray]:
    """Each job's values on uint8 RGB crops (``batches[input_size]``, (N, S, S, 3)), exactly as a store holds
    them; one forward pass per model for all of its layers."""
    timer = timer or StepTimer()
    groups: dict[tuple, list[FeatureJob]] = {}
    for job in jobs:
        groups.setdefault((job.representation.group, job.weights, job.weights_sha256, job.input_size), []).append(job)
    results = {}
    for (group, *_), members in groups.items():
        first, *others = members
        with timer(group), torch.inference_mode():
            module = _module(first.representation, first.weights, first.weights_sha256)
            outputs = first.representation.compute(
                module, to_float(batches[first.input_size]), [job.representation for job in others]
            )
        results.update({name: value.numpy() for name, value in outputs.items()})
    return results
