"""Figures of the analyses: rows of image tiles with a text label on the left, written as PNG."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import torch

from ..pipeline.images import to_uint8

LABEL_WIDTH = 150


def label_panel(text: str, height: int, width: int = LABEL_WIDTH) -> np.ndarray:
    """A white panel with ``text`` in black, broken into lines on spaces to fit the width."""
    panel = np.full((height, width, 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    fits = lambda line: cv2.getTextSize(line, font, scale, 1)[0][0] < width - 8  # noqa: E731
    lines: list[str] = []
    for word in text.split():
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
            continue
        while not fits(word) and len(word) > 1:  # a word wider than the panel (a path) continues on the next line
            cut = max(i for i in range(1, len(word) + 1) if fits(word[:i]) or i == 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (4, 14 + 14 * i), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def tile_row(label: str, images: torch.Tensor, size: int | None = None) -> np.ndarray:
    """One figure row: the label, then the images side by side (resized to ``size`` when given)."""
    if size is not None and images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    tiles = to_uint8(images)
    return np.concatenate([label_panel(label, tiles.shape[1]), *tiles], axis=1)


SERIES_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (127, 127, 127))


def line_plot(labels: list[str], series: dict[str, list[float | None]], y_label: str, size=(640, 360)) -> np.ndarray:
    """A line chart as an RGB picture: one line per series over the labelled x positions (None: no point)."""
    width, height = size
    left, right, top, bottom = 60, 20, 20, 70
    picture = np.full((height, width, 3), 255, np.uint8)
    values = [v for line in series.values() for v in line if v is not None]
    high = max([*values, 1e-9]) * 1.1
    font = cv2.FONT_HERSHEY_SIMPLEX

    def x_of(i: int) -> int:
        return left + int((width - left - right) * (i + 0.5) / len(labels))

    def y_of(v: float) -> int:
        return top + int((height - top - bottom) * (1 - v / high))

    cv2.line(picture, (left, top), (left, height - bottom), (0, 0, 0), 1)
    cv2.line(picture, (left, height - bottom), (width - right, height - bottom), (0, 0, 0), 1)
    for k in range(5):
        v = high * k / 4
        cv2.putText(picture, f"{v:.2f}", (4, y_of(v) + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for i, label in enumerate(labels):
        cv2.putText(
            picture,
            label,
            (x_of(i) - 4 * len(label), height - bottom + 16 + 12 * (i % 2)),
            font,
            0.35,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.putText(picture, y_label, (left + 4, top - 6), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    legend_x, legend_y = left, height - 30
    for n, (name, line) in enumerate(series.items()):
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        points = [(x_of(i), y_of(v)) for i, v in enumerate(line) if v is not None]
        for a, b in itertools.pairwise(points):
            cv2.line(picture, a, b, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(picture, p, 3, colour, -1, cv2.LINE_AA)
        text_width = cv2.getTextSize(name, font, 0.4, 1)[0][0]
        if legend_x + text_width > width - right:  # wrap the legend onto the next line
            legend_x, legend_y = left, legend_y + 16
        cv2.putText(picture, name, (legend_x, legend_y), font, 0.4, colour, 1, cv2.LINE_AA)
        legend_x += text_width + 24
    return picture


def captioned_row(label: str, images: torch.Tensor, captions: list[str], size: int | None = None) -> np.ndarray:
    """:func:`tile_row` with a caption (up to two lines) under each image."""
    row = tile_row(label, images, size)
    side = row.shape[0]
    strip = np.full((30, row.shape[1], 3), 255, np.uint8)
    for i, caption in enumerate(captions):
        x = LABEL_WIDTH + i * side + 2
        for j, line in enumerate(caption.split("\n")[:2]):
            cv2.putText(
                strip, line[: side // 6], (x, 12 + 13 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA
            )
    return np.concatenate([row, strip], axis=0)
