"""AlexNet as torchvision defines it (``features.N`` / ``classifier.N`` keys), with the paper's layers.

CONV1 = conv, ReLU, max-pool; CONV2 likewise; CONV3 and CONV4 after their ReLU; CONV5 after ReLU and pool;
FC6 and FC7 after their ReLU; FC8 the class scores before the softmax (Dosovitskiy & Brox 2016).
"""

from __future__ import annotations

from torch import nn

from .registry import BackboneConfig, Preprocess, TorchvisionClassifier, register_backbone
from .weights import torchvision_sources

IMAGENET = Preprocess(input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class AlexNet(TorchvisionClassifier):
    """torchvision's AlexNet, run step by step so that any set of layers comes out of one pass."""

    FEATURE_TAPS = {2: "conv1", 5: "conv2", 7: "conv3", 9: "conv4", 12: "conv5"}
    CLASSIFIER_TAPS = {2: "fc6", 5: "fc7", 6: "fc8"}

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )


register_backbone(
    BackboneConfig(
        name="alexnet",
        build=AlexNet,
        layers=(*CONV_LAYERS, "fc6", "fc7", "fc8"),
        preprocess=IMAGENET,
        sources=torchvision_sources(
            "alexnet-owt-7be5be79.pth",
            "alexnet.ckpt",
            lpips_module="AlexNet_0",
            conv_keys=[f"features.{i}" for i in (0, 3, 6, 8, 10)],
            covered=CONV_LAYERS,
            label="conv1-conv5",
        ),
        description="torchvision AlexNet (ImageNet), layers with the paper's last-processing-step semantics",
        class_score_layer="fc8",
        tour_layers="conv1-conv5",
    )
)
