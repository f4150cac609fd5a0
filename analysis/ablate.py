"""Top-k ablation on class scores (the paper's coloured-apple study): reconstruct from all scores, from the k
largest only, and with the k largest zeroed, and let the classifier say what each reconstruction shows."""

from __future__ import annotations

import torch

from ..pipeline.backbones import create_backbone, imagenet_class_names
from ..pipeline.features import get_representation


def ablate_top_k(scores: torch.Tensor, k: int = 5) -> dict[str, torch.Tensor]:
    """Score vectors (N, C): as they are, with all but the ``k`` largest set to zero, and with those ``k`` set
    to zero."""
    top = scores.topk(k, dim=1).indices
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top, True)
    return {
        "all scores": scores,
        f"top-{k} only": torch.where(keep, scores, torch.zeros_like(scores)),
        f"top-{k} zeroed": torch.where(keep, torch.zeros_like(scores), scores),
    }


class Classifier:
    """The network a class-score representation comes from, as a judge: images in, (class name, confidence)."""

    def __init__(self, spec: str, weights: str | None = None) -> None:
        rep = get_representation(spec)
        if not rep.class_scores:
            raise ValueError(f"{spec} is not a layer of class scores; use e.g. efficientnet_lite0:logits")
        self.network, self.layer = create_backbone(rep.backbone, weights), rep.layer
        self.size = rep.input_size
        self.names = imagenet_class_names()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 64) -> list[tuple[str, float]]:
        scores = []
        for i in range(0, len(images), batch):
            x = torch.nn.functional.interpolate(
                images[i : i + batch], size=(self.size, self.size), mode="bilinear", align_corners=False
            )
            scores.append(self.network(x.clamp(0, 1), [self.layer])[self.layer])
        return self.name(torch.cat(scores))

    def name(self, scores: torch.Tensor) -> list[tuple[str, float]]:
        """The top class of each score vector and its softmax confidence."""
        probabilities = scores.softmax(dim=1)
        confidence, index = probabilities.max(dim=1)
        return [(self.names[i], float(c)) for i, c in zip(index.tolist(), confidence, strict=True)]
