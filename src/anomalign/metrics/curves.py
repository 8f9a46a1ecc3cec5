"""Shared sorted-score machinery behind AUROC, AP, AUPR, F1-max and AUPRO.

Every curve used here (ROC, precision-recall, PRO) is piecewise linear in the counts of
negatives and positives above a threshold, and the counts of positives only change at
thresholds equal to a positive score. So instead of arg-sorting all pixels (what
scikit-learn does), we

1. sort the negative scores once (values only, no argsort; in parallel chunks on the CPU, or
   ``torch.sort`` on the tensor's device),
2. sort the far fewer positive scores and merge ties into groups of equal score,
3. for each distinct positive score ``s`` count negatives ``>= s`` and ``> s`` by binary search.

Groups of tied scores are merged exactly as in scikit-learn and the official MVTec AD code;
the results are exact, not binned.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from anomalign.metrics.validation import is_tensor

#: Arrays shorter than this are sorted in one piece.
_PARALLEL_MIN = 1 << 20


@dataclass(frozen=True)
class SortedNegatives:
    """Negative scores sorted ascending, possibly as several independently sorted chunks.

    Chunks need no merge: a count above a threshold is the sum of the chunks' counts.
    """

    chunks: tuple[Any, ...]  # numpy arrays or torch tensors, each sorted ascending
    n: int

    def count_ge_gt(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts of negatives ``>= v`` and ``> v`` for each ``v`` in ``values`` (int64)."""
        values = np.asarray(values)
        # numpy's binary search narrows its range when keys ascend; search in ascending order.
        flip = values.size > 1 and values[0] > values[-1]
        keys = np.ascontiguousarray(values[::-1] if flip else values)
        jobs = [(c, keys, side) for c in self.chunks for side in ("left", "right")]
        if len(jobs) > 2 and not is_tensor(self.chunks[0]):
            with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
                found = list(pool.map(_count_above, jobs))  # searchsorted releases the GIL
        else:
            found = [_count_above(job) for job in jobs]
        ge = np.sum(found[0::2], axis=0)
        gt = np.sum(found[1::2], axis=0)
        return (ge[::-1], gt[::-1]) if flip else (ge, gt)


def _count_above(job: tuple[Any, np.ndarray, str]) -> np.ndarray:
    """Number of elements of a sorted chunk above each key (``>=`` for left, ``>`` for right)."""
    chunk, keys, side = job
    if is_tensor(chunk):
        import torch

        k = torch.from_numpy(keys).to(chunk.device, chunk.dtype)
        idx = torch.searchsorted(chunk, k, right=side == "right").cpu().numpy()
    else:
        idx = np.searchsorted(chunk, keys.astype(chunk.dtype, copy=False), side)
    return len(chunk) - idx.astype(np.int64)


def sort_negatives(scores: Any, workers: int | None = None) -> SortedNegatives:
    """Sort negative scores (1-D numpy array or tensor); the array may be sorted in place."""
    if is_tensor(scores):
        import torch

        return SortedNegatives((torch.sort(scores.reshape(-1)).values,), int(scores.numel()))
    arr = np.ascontiguousarray(scores).reshape(-1)
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or arr.size < _PARALLEL_MIN:
        arr.sort()
        return SortedNegatives((arr,), int(arr.size))
    parts = np.array_split(arr, workers)  # views: sorting them sorts ``arr`` chunk-wise in place
    with ThreadPoolExecutor(workers) as pool:  # numpy's sort releases the GIL
        list(pool.map(np.ndarray.sort, parts))
    return SortedNegatives(tuple(parts), int(arr.size))


@dataclass(frozen=True)
class ScoreGroups:
    """Distinct positive scores in descending order, with the counts every metric needs.

    ``tp[g]`` positives and ``fp_ge[g]`` negatives score ``>= scores[g]``; ``fp_gt[g]``
    negatives score strictly higher. ``order`` sorts the positives descending and ``starts``
    gives where each group begins in that order (used for per-pixel weights such as PRO's).
    """

    scores: np.ndarray
    counts: np.ndarray
    tp: np.ndarray
    fp_ge: np.ndarray
    fp_gt: np.ndarray
    n_pos: int
    n_neg: int
    order: np.ndarray
    starts: np.ndarray

    def group_sums(self, weights: np.ndarray) -> np.ndarray:
        """Sum per-positive ``weights`` (in the caller's original order) over each group."""
        if self.n_pos == 0:
            return np.zeros(0, dtype=np.float64)
        return np.add.reduceat(weights[self.order].astype(np.float64, copy=False), self.starts)


def group_scores(negatives: SortedNegatives, positives: np.ndarray) -> ScoreGroups:
    """Merge tied positive scores into groups and count negatives around each group."""
    pos = np.asarray(positives).reshape(-1)
    order = np.argsort(pos, kind="stable")[::-1]
    ordered = pos[order]
    if ordered.size:
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    else:
        starts = np.zeros(0, dtype=np.intp)
    scores = ordered[starts]
    counts = np.diff(np.append(starts, ordered.size)).astype(np.int64)
    fp_ge, fp_gt = negatives.count_ge_gt(scores)
    return ScoreGroups(
        scores=scores,
        counts=counts,
        tp=np.cumsum(counts),
        fp_ge=fp_ge,
        fp_gt=fp_gt,
        n_pos=int(ordered.size),
        n_neg=negatives.n,
        order=order,
        starts=starts,
    )


def auroc(g: ScoreGroups) -> float:
    """Area under the ROC curve, ties counted one half (= scikit-learn's ``roc_auc_score``).

    Computed as the Mann-Whitney statistic in exact integer arithmetic.
    """
    below = g.n_neg - g.fp_ge
    ties = g.fp_ge - g.fp_gt
    twice = int(np.dot(g.counts, 2 * below + ties))
    return twice / (2.0 * g.n_pos * g.n_neg)


def average_precision(g: ScoreGroups) -> float:
    """Step-interpolated AP, ``sum (R_k - R_{k-1}) P_k`` (= scikit-learn)."""
    precision = g.tp / (g.tp + g.fp_ge)
    return float(np.dot(g.counts, precision) / g.n_pos)


def aupr_trapezoid(g: ScoreGroups) -> float:
    """Trapezoidal area under the PR curve, ``auc(recall, precision)`` as VisA's code reports.

    Between two positive groups only negatives enter, so the curve drops vertically to the
    precision just before the next group; the trapezoid then runs from there to the group.
    """
    tp_before = g.tp - g.counts
    denom = tp_before + g.fp_gt
    # Before the first group the curve sits at recall 0: precision 0 when negatives score
    # higher (scikit-learn's tp=0 points), else scikit-learn's end point (0, 1).
    prec_before = np.divide(
        tp_before, denom, out=np.ones(denom.shape, dtype=np.float64), where=denom > 0
    )
    precision = g.tp / (g.tp + g.fp_ge)
    return float(np.dot(g.counts, 0.5 * (prec_before + precision)) / g.n_pos)


def f1_max(g: ScoreGroups) -> tuple[float, float]:
    """Largest F1 over all thresholds and the threshold reaching it (predict ``score >= t``).

    F1 = 2TP / (TP + FP + P) only grows when positives enter, so the maximum lies at the end
    of a positive group.
    """
    f1 = 2.0 * g.tp / (g.tp + g.fp_ge + g.n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(g.scores[best])
