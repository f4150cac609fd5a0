"""HOGgles' two hot paths against scikit-learn's, on the same pairs in the same run.

    pip install scikit-learn   # the peer; preimage does not need it
    python bench/bench_hoggles.py [--atoms 256] [--steps 20] [--batch 400] [--threads 2]

Pairs are HOG windows of scikit-image's photos (5x5 cells at 128 px, with their 56x56 gray patches), normalised as
HOGgles learns them. 1) Sparse coding (what inversion spends its time on): preimage's batched FISTA against
``sklearn.decomposition.sparse_encode(algorithm="lasso_cd", positive=True)`` on the same dictionary, with the
lasso objective each reaches. 2) Dictionary learning: ``--steps`` updates of ``--batch`` pairs by preimage's online
learner against ``MiniBatchDictionaryLearning`` (the same objective, non-negative codes) for the same number of
batches, with the objective of each dictionary on held-back pairs.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from preimage.pipeline.features import hog
from preimage.pipeline.images import center_square, rgb_to_gray, sample_photos, to_float
from preimage.train.inversion.hoggles import HogglesConfig, learn_dictionary, sample_pairs, sparse_code

try:
    from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode
except ImportError:  # the peer is optional: say how to get it
    raise SystemExit("this benchmark compares with scikit-learn: pip install scikit-learn") from None


def objective(pairs: torch.Tensor, atoms: torch.Tensor, codes: torch.Tensor, sparsity: float) -> float:
    """Mean over pairs of 1/2 ||x - D a||^2 + sparsity ||a||_1."""
    residual = pairs - codes @ atoms.T
    return float((0.5 * (residual**2).sum(1) + sparsity * codes.abs().sum(1)).mean())


def best_of(repeats: int, run):
    """The result of ``run()`` and its fastest time in seconds over ``repeats`` calls after one warm-up."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="sklearn")  # its coordinate descent's convergence notes, per batch
    crops = [center_square(p, 128) for p in sample_photos().values()]
    crops += [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    gray = rgb_to_gray(to_float(np.stack(crops)).permute(0, 2, 3, 1))
    grids = hog(gray)
    config = HogglesConfig(atoms=args.atoms, steps=args.steps, batch=args.batch)
    generator = torch.Generator().manual_seed(1)
    pairs = sample_pairs(gray, grids, count=args.batch, window=config.window, cell=8, generator=generator)
    held = sample_pairs(gray, grids, count=args.batch, window=config.window, cell=8, generator=generator)
    atoms = sample_pairs(
        gray, grids, count=args.atoms, window=config.window, cell=8, generator=generator
    ).T.contiguous()
    atoms /= atoms.norm(dim=0, keepdim=True)
    print(
        f"{args.batch} pairs of {pairs.shape[1]} values, {args.atoms} atoms, lambda {config.sparsity}, "
        f"{args.threads} threads"
    )

    ours, ours_s = best_of(3, lambda: sparse_code(pairs, atoms, config.sparsity, config.lasso_steps))
    theirs, theirs_s = best_of(
        3,
        lambda: sparse_encode(
            pairs.numpy(), atoms.T.numpy(), algorithm="lasso_cd", alpha=config.sparsity, positive=True, n_jobs=1
        ),
    )
    theirs_t = torch.from_numpy(theirs).float()
    ours_objective, theirs_objective = (objective(pairs, atoms, c, config.sparsity) for c in (ours, theirs_t))
    print(
        f"sparse coding: preimage FISTA {ours_s * 1000:.0f} ms (objective {ours_objective:.5f}), sklearn lasso_cd "
        f"{theirs_s * 1000:.0f} ms (objective {theirs_objective:.5f}): {theirs_s / ours_s:.1f}x"
    )

    gray_all, grids_all = gray, grids
    start = time.perf_counter()
    learned = learn_dictionary(gray_all, grids_all, config, 8)
    ours_s = time.perf_counter() - start
    ours_atoms = torch.cat([learned.gray, learned.hog])
    stream = torch.cat(
        [
            sample_pairs(
                gray, grids, count=args.batch, window=config.window, cell=8, generator=torch.Generator().manual_seed(s)
            )
            for s in range(args.steps)
        ]
    )
    learner = MiniBatchDictionaryLearning(
        n_components=args.atoms,
        alpha=config.sparsity,
        batch_size=args.batch,
        max_iter=1,
        positive_code=True,
        fit_algorithm="cd",
        random_state=0,
        transform_algorithm="lasso_cd",
        transform_alpha=config.sparsity,
    )
    start = time.perf_counter()
    learner.fit(stream.numpy())
    theirs_s = time.perf_counter() - start
    theirs_atoms = torch.from_numpy(learner.components_.T.copy()).float()

    def held_objective(dictionary: torch.Tensor) -> float:
        return objective(held, dictionary, sparse_code(held, dictionary, config.sparsity, 300), config.sparsity)

    print(
        f"learning {args.steps} batches: preimage {ours_s:.1f} s (held-back objective "
        f"{held_objective(ours_atoms):.5f}), sklearn MiniBatchDictionaryLearning {theirs_s:.1f} s "
        f"({held_objective(theirs_atoms):.5f}): {theirs_s / ours_s:.1f}x"
    )


if __name__ == "__main__":
    main()
