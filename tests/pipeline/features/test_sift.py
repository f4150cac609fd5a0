"""Sparse SIFT: keypoints equal VLFeat's (vlsift), the grid encoding follows DESIGN.md, choices are seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from preimage.pipeline.checks import ImageInputError
from preimage.pipeline.features import SiftParams, SparseSIFT, sift
from preimage.pipeline.features.sift import CHANNELS, detect, encode_grid


def test_keypoints_are_vlfeat_defaults(gray_photos):
    from vlsift.sift.sift import sift as vl_sift

    image = gray_photos[0]
    frames, descriptors = vl_sift(image * 255, compute_descriptor=True, float_descriptors=True)
    keypoints, ours = detect(image)
    np.testing.assert_allclose(keypoints[:, :2], frames[:, [1, 0]])
    np.testing.assert_allclose(ours, descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_grid_cells_hold_keypoint_descriptor_offsets_angle_and_log_scale():
    keypoints = np.array([[9.5, 2.25, 2.0, math.pi / 6], [0.0, 13.0, 1.0, 0.0]], np.float32)
    descriptors = np.eye(2, 128, dtype=np.float32)
    grid = encode_grid(keypoints, descriptors, height=15, width=10)
    assert grid.shape == (4, 3, CHANNELS)  # ceil(15/4) x ceil(10/4)
    cell = grid[0, 2]  # y 2.25 -> row 0, x 9.5 -> column 2
    np.testing.assert_allclose(cell[:128], descriptors[0])
    np.testing.assert_allclose(cell[128:], [9.5 % 4, 2.25 % 4, 0.5, math.cos(math.pi / 6), math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(grid[3, 0, 128:], [0.0, 1.0, 0.0, 1.0, 0.0])
    occupied = np.abs(grid).sum(-1) > 0
    assert occupied.sum() == 2


def test_colliding_keypoints_one_is_chosen_by_the_seed():
    keypoints = np.array([[1.0 + 0.1 * i, 1.0, 1.0 + i, 0.0] for i in range(8)], np.float32)  # all in cell (0, 0)
    descriptors = np.eye(8, 128, dtype=np.float32)
    chosen = set()
    for seed in range(12):
        grid = encode_grid(keypoints, descriptors, height=8, width=8, params=SiftParams(seed=seed))
        assert (np.abs(grid).sum(-1) > 0).sum() == 1
        again = encode_grid(keypoints, descriptors, height=8, width=8, params=SiftParams(seed=seed))
        np.testing.assert_array_equal(grid, again)
        chosen.add(int(np.argmax(grid[0, 0, :128])))
    assert len(chosen) > 2, "the seed does not change which keypoint wins"


def test_batch_is_reproducible_and_per_image(gray_photos):
    same = np.stack([im[:64, :64] for im in gray_photos if min(im.shape) >= 64][:3])
    batch = sift(torch.from_numpy(same))
    assert batch.shape == (3, 16, 16, CHANNELS)
    torch.testing.assert_close(batch, SparseSIFT()(torch.from_numpy(same)))
    torch.testing.assert_close(batch[1], sift(torch.from_numpy(same[1:2]))[0])


def test_opencv_detector_is_available(gray_photos):
    grid = sift(torch.from_numpy(gray_photos[0])[None], SiftParams(detector="opencv"))
    assert (grid.abs().sum(-1) > 0).sum() > 10


def test_unknown_detector_is_an_error():
    with pytest.raises(ValueError, match="detector"):
        SiftParams(detector="surf")


@pytest.mark.parametrize("bad", [torch.zeros(0, 32, 32), torch.zeros(1, 1, 1), torch.zeros(32, 32, 3)])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ImageInputError):
        sift(bad)
