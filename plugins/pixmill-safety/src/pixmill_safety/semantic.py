"""Semantic near-duplicates for ``dedupe-images --serving clip``: the same scene rendered again
(another seed, another angle) has a different perceptual hash but nearly the same CLIP embedding.

Kept images' L2-normalised embeddings are compared with each new image's by cosine similarity, by
matrix product. That is exact and, next to computing the embeddings themselves, cheap up to a few
hundred thousand kept images; beyond that, shard the run or use an ANN index.
"""

from __future__ import annotations

from typing import Any


class EmbeddingIndex:
    """Kept embeddings in order; :meth:`best` gives each query's most similar one."""

    def __init__(self) -> None:
        self._chunks: list[Any] = []
        self._matrix: Any = None
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, embeddings: Any, ids: list[str]) -> None:
        if len(ids):
            self._chunks.append(embeddings)
            self._matrix = None
            self.ids.extend(ids)

    def best(self, queries: Any) -> tuple[Any, Any]:
        """(position, cosine similarity) of each query's most similar kept embedding (ties: the
        earliest); position -1 and similarity -inf when the index is empty."""
        import numpy as np

        n = len(queries)
        if not self.ids or not n:
            return np.full(n, -1, dtype=np.int64), np.full(n, -np.inf, dtype=np.float32)
        if self._matrix is None:
            self._matrix = np.concatenate(self._chunks)
            self._chunks = [self._matrix]
        sims = np.asarray(queries, dtype=np.float32) @ self._matrix.T
        pos = sims.argmax(axis=1)
        return pos, sims[np.arange(n), pos]
