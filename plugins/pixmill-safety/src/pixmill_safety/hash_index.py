"""A Hamming-distance index over 64-bit codes: multi-index hashing, vectorised with numpy.

Each code is cut into ``m`` chunks. Two codes within distance ``d`` agree within ``d // m`` bits on
at least one chunk (pigeonhole), so the candidates of a query are the codes whose chunk ``i``
equals the query's chunk ``i`` with up to ``d // m`` bits flipped: a few table lookups per chunk
instead of a comparison with every code. Candidates are then checked exactly with a popcount, so
the answer is exact for any ``d``. ``m`` is chosen per ``d`` to keep lookups plus candidates small
for a million codes (``d`` = 6: four 16-bit chunks, 1 flipped bit each, up to ~1.5M codes; three
21-22 bit chunks with 2 flipped bits beyond).

Each chunk keeps its codes' positions and the codes themselves sorted by chunk value, plus a dense
table of where each value starts, so one lookup is two array reads and its candidates one sweep; a
whole batch of queries and all its flip masks are looked up at once, and a batch of new codes is
merged into the sorted tables in a few linear passes. Codes keep their insertion order: "the earliest code within ``d``" is "the first kept
row in input order".
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Any

_MIN_SCALE = 4096
_MAX_CHUNK_BITS = 22  # a 2^22-entry start table is 32 MB per chunk
_LOOKUP_COST = 1.5  # one table lookup, in candidate checks


def _widths(m: int) -> list[int]:
    return [64 // m + (1 if i < 64 % m else 0) for i in range(m)]


def _plan(d: int, scale: int) -> list[int]:
    """Chunk widths minimising lookups + expected candidates per query at ``scale`` codes, with
    start tables no larger than a few entries per code. A lookup (a random read in a start table)
    costs about 1.5 candidate checks (a sweep through one bucket of sorted codes), as measured at
    1M codes: four 16-bit chunks with one flipped bit beat three 21-22 bit chunks with two."""
    limit = min(_MAX_CHUNK_BITS, max(12, (8 * scale - 1).bit_length()))
    best: tuple[float, list[int]] | None = None
    for m in range(3, 17):
        widths = _widths(m)
        if max(widths) > limit:
            continue
        r = d // m
        probes = [sum(comb(w, i) for i in range(r + 1)) for w in widths]
        cost = sum(p * (_LOOKUP_COST + scale / 2**w) for p, w in zip(probes, widths, strict=True))
        if best is None or cost < best[0]:
            best = (cost, widths)
    assert best is not None
    return best[1]


def _flip_masks(width: int, radius: int) -> list[int]:
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return masks


def codes_from_hex(hashes: list[str]) -> Any:
    """64-bit codes (a uint64 array) from hashes written as hex digits: one ``bytes.fromhex`` for
    the usual 16 digits each, else one ``int`` per hash."""
    import numpy as np

    joined = "".join(hashes)
    if len(joined) == 16 * len(hashes):
        try:
            return np.frombuffer(bytes.fromhex(joined), dtype=">u8").astype(np.uint64)
        except ValueError:
            pass
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


class HammingIndex:
    """Codes added in order; :meth:`nearest` finds each query's closest code within the distance."""

    def __init__(self, max_distance: int):
        import numpy as np

        if not 0 <= max_distance <= 31:
            raise ValueError("max_distance must be between 0 and 31 bits")
        self.max_distance = max_distance
        self._codes = np.zeros(0, dtype=np.uint64)
        self._layout(_MIN_SCALE)

    def _layout(self, scale: int) -> None:
        """(Re)build the chunk tables for about ``scale`` codes: the index grows by doubling, so
        a small index keeps small tables and a large one long chunks (few candidates)."""
        import numpy as np

        self._scale = scale
        self.widths = _plan(self.max_distance, scale * 3 // 4)  # it holds scale/2 to scale codes
        self._shifts = [sum(self.widths[:i]) for i in range(len(self.widths))]
        radius = self.max_distance // len(self.widths)
        # int32 throughout: half the memory traffic of int64 for the random reads that dominate
        self._masks = [np.array(_flip_masks(w, radius), dtype=np.int32) for w in self.widths]
        self._keys = [np.zeros(0, dtype=np.int32) for _ in self.widths]  # chunk values, sorted
        self._order = [np.zeros(0, dtype=np.int32) for _ in self.widths]  # code position of each key
        # the codes themselves in key order: a bucket's candidates are read in one sweep instead of
        # one random read each into the codes array (the cost that dominated at a million codes)
        self._sorted = [np.zeros(0, dtype=np.uint64) for _ in self.widths]
        self._starts = [np.zeros(2**w + 1, dtype=np.int32) for w in self.widths]  # value -> first slot
        codes, self._codes = self._codes, np.zeros(0, dtype=np.uint64)
        self._append(codes)

    def __len__(self) -> int:
        return len(self._codes)

    def _chunk(self, codes: Any, i: int) -> Any:
        import numpy as np

        mask = np.uint64((1 << self.widths[i]) - 1)
        return ((codes >> np.uint64(self._shifts[i])) & mask).astype(np.int32)

    def add(self, codes: Any) -> None:
        """Append codes (a uint64 array); their positions continue from the current size."""
        import numpy as np

        codes = np.asarray(codes, dtype=np.uint64)
        if len(self._codes) + len(codes) > self._scale:
            self._codes = np.concatenate([self._codes, codes])
            self._layout(2 * len(self._codes))
            return
        self._append(codes)

    def _append(self, codes: Any) -> None:
        import numpy as np

        if not len(codes):
            return
        start = len(self._codes)
        self._codes = np.concatenate([self._codes, codes])
        new_pos = np.arange(start, start + len(codes), dtype=np.int32)
        for i, width in enumerate(self.widths):
            # Merge the new codes into the sorted tables: where each lands (after the equal keys
            # already there, so positions stay ascending within a key), then one masked copy per
            # table: a few linear passes, not a sort of the whole index per batch.
            new_keys = self._chunk(codes, i)
            by_key = np.argsort(new_keys, kind="stable")
            new_keys = new_keys[by_key]
            at = np.searchsorted(self._keys[i], new_keys, side="right") + np.arange(len(new_keys))
            old = np.ones(len(self._keys[i]) + len(new_keys), dtype=bool)
            old[at] = False
            for table, added in ((self._keys, new_keys), (self._order, new_pos[by_key]), (self._sorted, codes[by_key])):
                merged = np.empty(len(old), dtype=table[i].dtype)
                merged[at] = added
                merged[old] = table[i]
                table[i] = merged
            self._starts[i][1:] += np.cumsum(np.bincount(new_keys, minlength=2**width), dtype=np.int32)

    def pairs(self, queries: Any) -> tuple[Any, Any, Any]:
        """Every (query index, code position, distance) with distance <= max_distance (a pair
        found through several chunks appears several times)."""
        import numpy as np

        queries = np.asarray(queries, dtype=np.uint64)
        found_q, found_c, found_d = [], [], []
        if len(queries) and len(self._codes):
            for i in range(len(self.widths)):
                masks, starts = self._masks[i], self._starts[i]
                probes = (self._chunk(queries, i)[:, None] ^ masks[None, :]).ravel()
                lo = starts[probes]
                counts = starts[probes + 1] - lo
                hit = np.flatnonzero(counts)
                if not len(hit):
                    continue
                lo, counts = lo[hit], counts[hit]
                qidx = np.repeat((hit // len(masks)).astype(np.int32), counts)
                offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32), counts)
                slots = offsets + np.arange(len(qidx), dtype=np.int32)
                dist = np.bitwise_count(self._sorted[i][slots] ^ queries[qidx])
                keep = np.flatnonzero(dist <= self.max_distance)
                found_q.append(qidx[keep].astype(np.int64))
                found_c.append(self._order[i][slots[keep]].astype(np.int64))
                found_d.append(dist[keep].astype(np.int64))
        if not found_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(found_q), np.concatenate(found_c), np.concatenate(found_d)

    def nearest(self, queries: Any) -> tuple[Any, Any]:
        """(position, distance) of each query's closest code (ties: the earliest), -1 where none."""
        import numpy as np

        n = len(queries)
        best_pos = np.full(n, -1, dtype=np.int64)
        best_dist = np.full(n, -1, dtype=np.int64)
        q, c, d = self.pairs(queries)
        if len(q):
            order = np.lexsort((c, d, q))  # by query, then distance, then position
            q, c, d = q[order], c[order], d[order]
            first = np.concatenate([[True], q[1:] != q[:-1]])
            best_pos[q[first]] = c[first]
            best_dist[q[first]] = d[first]
        return best_pos, best_dist


def all_pairs_nearest(codes: Any, max_distance: int) -> tuple[Any, Any]:
    """The same answer as keeping codes in order through a :class:`HammingIndex`, by comparing every
    code with every earlier kept one: O(n^2), for tests and for the benchmark's comparison figure."""
    import numpy as np

    codes = np.asarray(codes, dtype=np.uint64)
    kept = np.zeros(len(codes), dtype=np.uint64)
    kept_pos = np.zeros(len(codes), dtype=np.int64)
    n_kept = 0
    dup_of = np.full(len(codes), -1, dtype=np.int64)
    dist_of = np.full(len(codes), -1, dtype=np.int64)
    for j in range(len(codes)):
        if n_kept:
            dist = np.bitwise_count(kept[:n_kept] ^ codes[j])
            k = int(np.argmin(dist))  # argmin returns the first (earliest) of equal minima
            if dist[k] <= max_distance:
                dup_of[j], dist_of[j] = kept_pos[k], int(dist[k])
                continue
        kept[n_kept], kept_pos[n_kept] = codes[j], j
        n_kept += 1
    return dup_of, dist_of
