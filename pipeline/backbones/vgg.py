"""VGG16 as torchvision defines it (``features.N`` / ``classifier.N`` keys); every conv after its ReLU."""

from __future__ import annotations

from torch import nn

from .alexnet import IMAGENET
from .registry import BackboneConfig, TorchvisionClassifier, register_backbone
from .weights import torchvision_sources

PLAN = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _feature_layers() -> tuple[list[nn.Module], dict[int, str], list[int]]:
    """torchvision's vgg16 ``features`` with the tap after each ReLU (conv{b}_{i}) and pool (pool{b})."""
    modules: list[nn.Module] = []
    taps: dict[int, str] = {}
    convs: list[int] = []
    channels = 3
    for block, widths in enumerate(PLAN, start=1):
        for i, width in enumerate(widths, start=1):
            convs.append(len(modules))
            modules += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            taps[len(modules) - 1] = f"conv{block}_{i}"
            channels = width
        modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        taps[len(modules) - 1] = f"pool{block}"
    return modules, taps, convs


_, FEATURE_TAPS, CONV_INDICES = _feature_layers()
CONV_LAYERS = tuple(FEATURE_TAPS[i] for i in sorted(FEATURE_TAPS))


class VGG16(TorchvisionClassifier):
    """torchvision's VGG16 (without batch norm)."""

    FEATURE_TAPS = FEATURE_TAPS
    CLASSIFIER_TAPS = {1: "fc6", 4: "fc7", 6: "fc8"}

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(*_feature_layers()[0])
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )


register_backbone(
    BackboneConfig(
        name="vgg16",
        build=VGG16,
        layers=(*CONV_LAYERS, "fc6", "fc7", "fc8"),
        preprocess=IMAGENET,
        sources=torchvision_sources(
            "vgg16-397923af.pth",
            "vgg16.ckpt",
            lpips_module="VGG16_0",
            conv_keys=[f"features.{i}" for i in CONV_INDICES],
            covered=CONV_LAYERS,  # every feature layer, pools included: pools need no weights
            label="conv1_1-conv5_3",
        ),
        description="torchvision VGG16 (ImageNet); conv layers after ReLU, pool1-pool5, fc6-fc8",
        class_score_layer="fc8",
        tour_layers="conv5_3",
    )
)
