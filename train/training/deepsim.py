"""DeePSiM (Dosovitskiy & Brox, NIPS 2016): a decoder trained with a distance in a comparator network's feature
space, an adversarial term and the pixel term, so that what a layer keeps comes back sharp instead of averaged.

    L = lambda_feat * L_feat + lambda_adv * L_adv + lambda_img * L_img

- ``L_img``: squared pixel error, summed over the image in 0-255 units (the paper's).
- ``L_feat``: squared distance between the comparator's features of the reconstruction and of the image: AlexNet
  CONV5 (real ImageNet weights), as the paper's inversion of AlexNet uses. A comparator may span layers of one
  network (``--loss-option comparator=alexnet:conv1-conv5``): each layer's term as CONV5's, summed. The shipped
  DeePSiM decoders use these five layers: fine-tuning the CONV5 pixel decoder on a quarter of the photos for 66
  steps, CONV5 alone moved the held-out LPIPS from 0.726 to 0.692 and the five layers to 0.603 (docs/quality.md).
- ``L_adv = -log D(G(x), x)``: a discriminator that sees the image and the features it should come from (the
  paper's conditional design), trained against the decoder with ``L_D = -log D(y, x) - log(1 - D(G(x), x))``.

Weights (``DeepSimWeights``): the paper's lambda_img = 2e-6, lambda_adv = 100 and lambda_feat = 0.01. The paper
sums over 227 x 227 images and CONV5's 9,216 values; here each sum is the mean over this run's elements times the
paper's count, so the three terms keep the paper's balance at any image size. The comparator is torchvision's
AlexNet, not the paper's Caffe one: its features are of a similar magnitude (each network's first layer absorbed
its own input scale in training), so lambda_feat is taken as it is. (Scaling it by Caffe's input range, (255 *
0.226)^2, made the feature term 99% of the loss and the decoder drew a feature-matching texture: seen here.)
The paper's Adam settings: rate 0.0002, betas (0.9, 0.999), for both networks (``train --lr 0.0002``). Its
balance trick, as read here: the discriminator is not updated while it wins by far, its loss under a tenth of the
decoder's adversarial loss (a discriminator that rejects every reconstruction leaves the decoder no gradient);
it resumes as soon as the decoder catches up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from ...pipeline.features import expand_specs, get_representation
from ...runtime.device import rank_and_world
from .objective import Diverged, Objective, register_objective
from .precision import autocast

PAPER_PIXELS = 3 * 227 * 227  # values the paper's L_img sums over
PAPER_FEATURES = 6 * 6 * 256  # AlexNet CONV5 at 227 x 227: values the paper's L_feat sums over
BALANCE = 0.1  # the discriminator rests while its loss is under this fraction of the decoder's adversarial loss


@dataclass(frozen=True)
class DeepSimWeights:
    """The three terms' weights and the comparator: defaults from the paper (module docstring)."""

    pixel: float = 2e-6
    feature: float = 0.01
    adversarial: float = 100.0
    comparator: str = "alexnet:conv5"
    comparator_size: int = 128  # reconstructions and images are resized to this side for the comparator
    discriminator_lr: float = 2e-4


def deepsim_weights(**options) -> DeepSimWeights:
    """The paper's weights with ``options`` (``train --loss-option KEY=VALUE``) replacing some; an error naming the
    settings for an unknown key."""
    known = [f.name for f in fields(DeepSimWeights)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"deepsim has no setting {', '.join(unknown)}; its settings: {', '.join(known)}")
    defaults = DeepSimWeights()
    return DeepSimWeights(**{k: type(getattr(defaults, k))(v) for k, v in options.items()})


class Discriminator(nn.Module):
    """Real or generated, given the image and the features it should come from: a convolutional stream on the
    image and a fully connected one on the (normalised) features, joined by two linear layers (the paper's
    design, scaled to this run's images). One logit per image."""

    def __init__(self, feature_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.2)
        chans = (width, 2 * width, 4 * width, 8 * width, 8 * width)
        layers: list[nn.Module] = []
        previous = 3
        for out, kernel, stride in zip(chans, (5, 5, 3, 3, 3), (2, 1, 2, 1, 2), strict=True):
            layers += [nn.Conv2d(previous, out, kernel, stride, kernel // 2), act]
            previous = out
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, 256), act)
        size = math.prod(feature_shape)
        self.features = nn.Sequential(
            nn.Flatten(), nn.LayerNorm(size), nn.Linear(size, 512), act, nn.Linear(512, 256), act
        )
        self.joint = nn.Sequential(nn.Linear(512, 256), act, nn.Linear(256, 1))

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.image(images), self.features(features.float())], 1)).squeeze(1)


@register_objective("deepsim")
class DeepSim(Objective):
    """The DeePSiM loss for a decoder of ``feature_shape`` features; holds the discriminator and its optimiser
    (checkpointed with the decoder) and the frozen comparator."""

    name = "deepsim"

    def __init__(self, feature_shape: tuple[int, ...], weights: DeepSimWeights | None = None, **options) -> None:
        super().__init__()

        self.weights = weights or deepsim_weights(**options)
        layers = [get_representation(spec) for spec in expand_specs(self.weights.comparator)]
        if len({layer.module_key for layer in layers}) != 1:
            raise ValueError(f"comparator {self.weights.comparator!r}: layers of one network, e.g. alexnet:conv1-conv5")
        self.comparator = layers[0].load().requires_grad_(False).eval()
        self.comparator_layers = [layer.layer for layer in layers]
        self.discriminator = Discriminator(tuple(feature_shape))
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.weights.discriminator_lr, betas=(0.9, 0.999)
        )
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None = None

    def compare(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The comparator's features of images (N, 3, T, T) in [0, 1], at ``comparator_size``: one map per layer."""
        size = self.weights.comparator_size
        if images.shape[-1] != size:
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        found = self.comparator(images, self.comparator_layers)
        return [found[layer] for layer in self.comparator_layers]

    def feature_distance(self, recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """L_feat: each comparator layer's mean squared difference times the paper's count, summed over layers."""
        with torch.no_grad():
            targets = self.compare(images)
        return sum((a - b).square().mean() for a, b in zip(self.compare(recon), targets, strict=True)) * PAPER_FEATURES

    def step(self, network: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> tuple[torch.Tensor, dict]:
        if getattr(network, "takes", "features") == "images":
            raise ValueError("--loss deepsim trains decoders of stored features, not autoencoders")
        with autocast(x.device, precision):
            recon = network(x)
        recon = recon.float()
        w = self.weights
        pixel = (255 * (recon - y)).square().mean() * PAPER_PIXELS
        feature = self.feature_distance(recon, y)
        fake_logit = self.discriminator(recon, x)
        adversarial = nn.functional.softplus(-fake_logit).mean()  # -log D(G(x), x)
        loss = w.pixel * pixel + w.feature * feature + w.adversarial * adversarial
        self._pending = (recon.detach(), y, x, float(adversarial.detach()))
        terms = {
            "pixel_loss": float(pixel.detach()),
            "feature_loss": float(feature.detach()),
            "adversarial_loss": float(adversarial.detach()),
        }
        return loss, terms

    def after_step(self) -> dict:
        """The discriminator's step on this batch (real images against the decoder's reconstructions), unless it
        is resting (:data:`BALANCE`); its two losses for the log."""
        recon, y, x, adversarial = self._pending
        self._pending = None
        real = nn.functional.softplus(-self.discriminator(y, x)).mean()  # -log D(y, x)
        fake = nn.functional.softplus(self.discriminator(recon, x)).mean()  # -log(1 - D(G(x), x))
        # with several ranks, each decides on the losses averaged over all, so that all rest or step together
        real_mean, fake_mean, adversarial = _mean_over_ranks(real.device, real.detach(), fake.detach(), adversarial)
        losses = real_mean, fake_mean
        if not all(math.isfinite(v) for v in losses):
            raise Diverged(f"the discriminator's losses are {losses[0]:.4g} (real) and {losses[1]:.4g} (generated)")
        rests = (losses[0] + losses[1]) / 2 < BALANCE * adversarial
        if not rests:
            self.optimizer.zero_grad(set_to_none=True)
            (real + fake).backward()
            _average_gradients(self.discriminator)  # one discriminator on every rank, as DDP keeps the decoder
            self.optimizer.step()
        return {"discriminator_real": losses[0], "discriminator_fake": losses[1], "discriminator_rests": rests}

    def models(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator_optimizer": self.optimizer}


def _mean_over_ranks(device: torch.device, *values) -> tuple[float, ...]:
    """Scalars averaged over every rank (as they are with one rank); ``device``: where the process group reduces."""
    if rank_and_world()[1] == 1:
        return tuple(float(v) for v in values)
    together = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(together)
    return tuple((together / rank_and_world()[1]).tolist())


def _average_gradients(module: nn.Module) -> None:
    """Each gradient of ``module`` averaged over every rank."""
    world = rank_and_world()[1]
    if world == 1:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world
