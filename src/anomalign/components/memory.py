"""A patch memory of normal tokens, shared by the memory-based methods.

FineGrainedAD's vision-guided branch (VAD, finegrainedad.md §4) is its first user, and a
PatchCore-style baseline needs the same search. For each memory block the bank holds
the L2-normalised original-path patch tokens of the k normal images. A query token's
score is ``min_j (1 - cos(q, m_j)) / 2`` over the bank, and the VAD map averages the
blocks. :class:`ExactIndex` computes it exactly in chunks of queries and bank rows, so
memory stays bounded for many shots;
:class:`IVFIndex` is an approximate index (inverted lists from a seeded spherical
k-means, probing the nearest lists) with the same interface for large banks.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class NearestIndex(Protocol):
    """Largest cosine similarity of each query to a fixed bank of normalised rows."""

    bank: torch.Tensor

    def max_cosine(self, queries: torch.Tensor) -> torch.Tensor: ...


class ExactIndex:
    """Exact cosine nearest neighbour, chunked over queries and bank rows."""

    def __init__(self, bank: torch.Tensor, chunk: int = 4096, normalized: bool = False) -> None:
        self.bank = bank.float() if normalized else F.normalize(bank.float(), dim=-1)
        self.chunk = int(chunk)

    def max_cosine(self, queries: torch.Tensor) -> torch.Tensor:
        """``(Q, W)`` normalised queries -> ``(Q,)`` largest cosine to the bank."""
        out = torch.empty(queries.shape[0], device=queries.device)
        for qs in range(0, queries.shape[0], self.chunk):
            q = queries[qs : qs + self.chunk].float()
            best = torch.full((q.shape[0],), -2.0, device=q.device)
            for bs in range(0, self.bank.shape[0], self.chunk):
                sims = q @ self.bank[bs : bs + self.chunk].T
                best = torch.maximum(best, sims.max(dim=1).values)
            out[qs : qs + q.shape[0]] = best
        return out


class IVFIndex:
    """Approximate nearest neighbour: inverted lists from a seeded spherical k-means.

    Each query is compared exactly with the rows of its ``n_probe`` nearest lists only.
    With ``n_probe == n_lists`` the result equals :class:`ExactIndex`.
    """

    def __init__(
        self,
        bank: torch.Tensor,
        n_lists: int = 64,
        n_probe: int = 8,
        iterations: int = 10,
        seed: int = 0,
        chunk: int = 4096,
        normalized: bool = False,
    ) -> None:
        self.bank = bank.float() if normalized else F.normalize(bank.float(), dim=-1)
        n_lists = max(1, min(int(n_lists), self.bank.shape[0]))
        self.n_probe = max(1, min(int(n_probe), n_lists))
        self.chunk = int(chunk)
        generator = torch.Generator().manual_seed(seed)
        pick = torch.randperm(self.bank.shape[0], generator=generator)[:n_lists]
        centroids = self.bank[pick.to(self.bank.device)].clone()
        assign = torch.zeros(self.bank.shape[0], dtype=torch.long, device=self.bank.device)
        for _ in range(iterations):
            assign = self._nearest_lists(self.bank, centroids, 1)[:, 0]
            sums = torch.zeros_like(centroids).index_add_(0, assign, self.bank)
            counts = torch.bincount(assign, minlength=n_lists)
            keep = counts > 0  # an emptied list keeps its previous centroid
            centroids[keep] = F.normalize(sums[keep], dim=-1)
        self.centroids = centroids
        self.lists = [torch.nonzero(assign == i).flatten() for i in range(n_lists)]

    def _nearest_lists(self, x: torch.Tensor, centroids: torch.Tensor, k: int) -> torch.Tensor:
        out = []
        for start in range(0, x.shape[0], self.chunk):
            out.append((x[start : start + self.chunk] @ centroids.T).topk(k, dim=1).indices)
        return torch.cat(out)

    def max_cosine(self, queries: torch.Tensor) -> torch.Tensor:
        """``(Q, W)`` normalised queries -> ``(Q,)`` approximate largest cosine."""
        queries = queries.float()
        probes = self._nearest_lists(queries, self.centroids, self.n_probe)
        best = torch.full((queries.shape[0],), -2.0, device=queries.device)
        for index, members in enumerate(self.lists):
            rows = torch.nonzero((probes == index).any(dim=1)).flatten()
            if rows.numel() == 0 or members.numel() == 0:
                continue
            sims = queries[rows] @ self.bank[members].T
            best[rows] = torch.maximum(best[rows], sims.max(dim=1).values)
        return best


class PatchMemory:
    """Memory banks of normal patch tokens per block; scores tokens by their distance."""

    def __init__(
        self,
        banks: dict[int, torch.Tensor],
        index: str = "exact",
        chunk: int = 4096,
        ivf_lists: int = 64,
        ivf_probe: int = 8,
        seed: int = 0,
        normalized: bool = False,
    ) -> None:
        """``banks``: ``{block: (M, W)}`` rows; ``normalized`` skips re-normalising (on load)."""
        if not banks:
            raise ValueError("PatchMemory needs at least one block")
        self.index_kind = index
        self.indexes: dict[int, NearestIndex] = {}
        for block, bank in sorted(banks.items()):
            if index == "ivf":
                self.indexes[block] = IVFIndex(
                    bank, ivf_lists, ivf_probe, seed=seed, chunk=chunk, normalized=normalized
                )
            else:
                self.indexes[block] = ExactIndex(bank, chunk, normalized)

    @classmethod
    def from_tokens(cls, intermediates: dict[int, torch.Tensor], **kwargs) -> PatchMemory:
        """Build from ``{block: (k, N, W)}`` tokens of the normal images."""
        return cls({b: t.reshape(-1, t.shape[-1]) for b, t in intermediates.items()}, **kwargs)

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(self.indexes)

    @property
    def banks(self) -> dict[int, torch.Tensor]:
        return {block: index.bank for block, index in self.indexes.items()}

    def score(self, intermediates: dict[int, torch.Tensor]) -> torch.Tensor:
        """``{block: (B, N, W)}`` query tokens -> ``(B, N)`` VAD scores in [0, 1]."""
        total = None
        for block, index in self.indexes.items():
            tokens = intermediates[block]
            flat = F.normalize(tokens.reshape(-1, tokens.shape[-1]).float(), dim=-1)
            score = ((1.0 - index.max_cosine(flat)) / 2.0).view(tokens.shape[:2])
            total = score if total is None else total + score
        assert total is not None
        return total / len(self.indexes)


def squared_l2(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``(Q, W)``, ``(M, W)`` -> ``(Q, M)`` squared Euclidean distances (clamped at 0)."""
    queries, bank = queries.float(), bank.float()
    q2 = (queries * queries).sum(-1, keepdim=True)
    m2 = (bank * bank).sum(-1)
    return (q2 + m2 - 2.0 * queries @ bank.T).clamp_min_(0.0)


def l2_nearest(
    queries: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bank rows of each query by Euclidean distance, chunked over both.

    Returns ``(Q, k)`` distances (ascending) and ``(Q, k)`` bank indices.
    """
    k = min(int(k), bank.shape[0])
    out_d = torch.empty(queries.shape[0], k, device=queries.device)
    out_i = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
    for qs in range(0, queries.shape[0], chunk):
        q = queries[qs : qs + chunk]
        best_d: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for bs in range(0, bank.shape[0], chunk):
            d = squared_l2(q, bank[bs : bs + chunk])
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            i = i + bs
            if best_d is None or best_i is None:
                best_d, best_i = d, i
            else:
                d = torch.cat([best_d, d], 1)
                i = torch.cat([best_i, i], 1)
                best_d, pick = d.topk(k, dim=1, largest=False)
                best_i = i.gather(1, pick)
        assert best_d is not None and best_i is not None
        out_d[qs : qs + q.shape[0]] = best_d.sqrt()
        out_i[qs : qs + q.shape[0]] = best_i
    return out_d, out_i


def greedy_coreset(
    features: torch.Tensor,
    count: int,
    *,
    projection_dim: int | None = 128,
    seed: int = 0,
    chunk: int = 65536,
) -> torch.Tensor:
    """Greedy k-center coreset (PatchCore, Roth et al. 2022, Alg. 1): indices of ``count``
    rows of ``features`` ``(M, W)``, in selection order.

    Distances are computed on a seeded Gaussian random projection to ``projection_dim``
    dimensions (the paper's Johnson-Lindenstrauss speed-up; None or ``>= W``: none). The
    first centre is drawn with ``seed``; each next one is the row farthest from the
    centres chosen so far (ties: the lowest index).
    """
    total = features.shape[0]
    count = max(1, min(int(count), total))
    generator = torch.Generator().manual_seed(int(seed))
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        matrix = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        x = x @ matrix.to(x.device)
    first = int(torch.randint(total, (1,), generator=generator))
    chosen = torch.empty(count, dtype=torch.long)
    chosen[0] = first
    norms = (x * x).sum(-1)

    def distances_to(index: int) -> torch.Tensor:
        centre = x[index]
        out = torch.empty(total, device=x.device)
        for start in range(0, total, chunk):
            part = x[start : start + chunk]
            out[start : start + chunk] = (
                norms[start : start + chunk] + norms[index] - 2 * (part @ centre)
            )
        return out.clamp_min_(0.0)

    nearest = distances_to(first)
    for step in range(1, count):
        index = int(torch.argmax(nearest))
        chosen[step] = index
        nearest = torch.minimum(nearest, distances_to(index))
    return chosen
