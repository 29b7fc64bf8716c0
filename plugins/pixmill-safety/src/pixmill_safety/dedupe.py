"""``dedupe-images``: drop exact and near-duplicate images, keeping the first row in input order.

Exact duplicates share the sha256 of their file bytes; near-duplicates (resized, re-encoded,
slightly brightened copies) have perceptual hashes within ``--max-distance`` bits. Every row is
compared with every row kept before it, across the whole step, through a :class:`HammingIndex`
(multi-index hashing), not pairwise. Lives in this plugin, not the core, because the hashes need
numpy and imagehash (which brings scipy and PyWavelets). With ``--serving clip`` the rows that pass
the hash checks are also compared by CLIP embedding (semantic duplicates, see :mod:`.semantic`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pixmill.context import StepContext
from pixmill.image_files import ImageError, open_row_image
from pixmill.operator import Dropped, Failed, Operator, Outcome
from pixmill.ops.per_image import IMAGE_KEY, WORKERS, image_fields_read, row_image_paths
from pixmill.options import Option
from pixmill.rows import ID_KEY
from pixmill.serving import IMAGE_TEXT_EMBEDDING

from .hash_index import HammingIndex
from .hashing import HASH_METHODS, file_hashes
from .semantic import EmbeddingIndex

DEFAULT_MAX_DISTANCE = 6  # bits of 64: catches resized, JPEG q70 and brightened copies (docs/curation.md)


class DedupeImages(Operator):
    """Mark or drop rows whose image repeats an earlier row's, exactly or nearly.

    Writes ``duplicate_of`` (the id of the kept row it copies, or null), ``duplicate_distance``
    (Hamming bits between the perceptual hashes; 0 for an exact copy) and the hashes under
    ``--hash-key`` (reused when a row already holds them, so a rerun or another threshold costs no
    image reads). With ``--drop`` the duplicates leave the output, recorded with the id of their
    original in the step's ``dropped.jsonl`` and the gallery. A row with several images is compared
    by its first image. With ``--serving clip``, rows whose hashes differ but whose CLIP image
    embeddings have a cosine similarity of at least ``--min-similarity`` are duplicates too
    (``duplicate_similarity`` says how close).
    """

    name = "dedupe-images"
    description = "exact and near-duplicate images (sha256 + perceptual hash within N bits); keeps the first"
    options = (
        IMAGE_KEY,
        Option("max_distance", int, DEFAULT_MAX_DISTANCE, "largest Hamming distance (bits of 64) between "
               "perceptual hashes that counts as a duplicate; 0 = identical hashes only"),
        Option("hash", str, "phash", "perceptual hash: phash (DCT, robust to resizing and re-encoding) or dhash",
               choices=HASH_METHODS),
        Option("hash_key", str, "image_hashes", "field that caches the hashes ({sha256, phash|dhash})"),
        Option("drop", bool, False, "drop duplicates (recorded in dropped.jsonl) instead of only marking them"),
        Option("min_similarity", float, 0.95, "with --serving clip: CLIP cosine similarity at or above which "
               "two images are duplicates (the same scene rendered again)"),
        WORKERS,
    )
    capability = IMAGE_TEXT_EMBEDDING
    serving_optional = True
    stateful = True
    default_batch_size = 10000

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        if not 0 <= self.config["max_distance"] <= 31:
            from pixmill.errors import ConfigError

            raise ConfigError(f"dedupe-images: --max-distance {self.config['max_distance']} is out of range",
                              "pass a number of bits from 0 to 31 (default 6)")

    def fields_read(self) -> list[tuple[str, ...]]:
        return image_fields_read(self.config["image_key"])

    def fields_written(self) -> list[str]:
        return ["duplicate_of", "duplicate_distance", "duplicate_similarity", self.config["hash_key"]]

    # -- state ------------------------------------------------------------------------------------
    def start(self, ctx: StepContext) -> None:
        import numpy as np

        self._index = HammingIndex(self.config["max_distance"])
        self._ids: list[str] = []  # id of each code in the index, in order
        self._by_sha: dict[str, str] = {}
        self._semantic = EmbeddingIndex()
        if ctx.committed_rows is None or not ctx.committed_count:
            return
        method, hash_key = self.config["hash"], self.config["hash_key"]
        codes, kept_rows = [], []
        for row in ctx.committed_rows():
            hashes = row.get(hash_key) or {}
            if row.get("duplicate_of") is None and hashes.get(method):
                self._by_sha.setdefault(hashes["sha256"], row[ID_KEY])
                self._ids.append(row[ID_KEY])
                codes.append(int(hashes[method], 16))
                kept_rows.append(row)
        self._index.add(np.array(codes, dtype=np.uint64))
        if self.serving is not None:  # embeddings are not kept in rows (too large): embed again
            for lo in range(0, len(kept_rows), 64):
                chunk = kept_rows[lo:lo + 64]
                images = [self._image(row, ctx) for row in chunk]
                self._semantic.add(self.serving.embed_images(images), [row[ID_KEY] for row in chunk])

    # -- hashing ----------------------------------------------------------------------------------
    def _hashes(self, rows: list[dict], ctx: StepContext) -> list[dict | Failed]:
        method, hash_key, key = self.config["hash"], self.config["hash_key"], self.config["image_key"]

        def one(row: dict) -> dict | Failed:
            cached = row.get(hash_key)
            if isinstance(cached, dict) and cached.get("sha256") and cached.get(method):
                return cached
            try:
                field, paths, _ = row_image_paths(row, key)
            except ValueError as exc:
                return Failed(str(exc))
            try:
                found = open_row_image(ctx, paths[0], field, row=row, read=lambda p: file_hashes(p, method))
            except ImageError as exc:
                return Failed(str(exc))
            return {**(cached if isinstance(cached, dict) else {}), **found}

        todo = [r for r in rows if not isinstance(r.get(hash_key), dict) or not r[hash_key].get(method)]
        workers = self.config["workers"] or min(8, os.cpu_count() or 1)
        if len(todo) < 8 or workers <= 1:
            return [one(r) for r in rows]
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes and resizes without the GIL
            return list(pool.map(one, rows))

    # -- one batch --------------------------------------------------------------------------------
    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        import numpy as np

        method, hash_key, drop = self.config["hash"], self.config["hash_key"], self.config["drop"]
        hashes = self._hashes(rows, ctx)
        good = [i for i, h in enumerate(hashes) if type(h) is not Failed]
        codes = np.array([int(hashes[i][method], 16) for i in good], dtype=np.uint64)
        # Against every row kept in earlier batches...
        prev_pos, prev_dist = (p.tolist() for p in self._index.nearest(codes))
        # ...and against the rows of this batch kept before each one.
        local = HammingIndex(self.config["max_distance"])
        local.add(codes)
        q, c, d = local.pairs(codes)
        earlier = c < q
        in_batch: dict[int, list[tuple[int, int]]] = {}
        for qi, ci, di in zip(q[earlier].tolist(), c[earlier].tolist(), d[earlier].tolist(), strict=True):
            in_batch.setdefault(qi, []).append((di, ci))

        by_sha, ids, base = self._by_sha, self._ids, len(self._ids)
        kept = np.zeros(len(good), dtype=bool)
        out: list[Outcome] = list(hashes)  # failures stay in place; the rest are replaced below
        for j, i in enumerate(good):
            row, found = rows[i], hashes[i]
            row[hash_key] = found
            original = by_sha.get(found["sha256"])
            distance, exact = 0, original is not None
            if original is None:
                p, near = prev_pos[j], in_batch.get(j)
                if p < 0 and near is None:  # the common case: nothing close, keep it
                    kept[j] = True
                    by_sha[found["sha256"]] = row[ID_KEY]
                    row["duplicate_of"] = row["duplicate_distance"] = None
                    out[i] = row
                    continue
                options = [(prev_dist[j], p, ids[p])] if p >= 0 else []
                options += [(dist, base + ci, rows[good[ci]][ID_KEY]) for dist, ci in near or () if kept[ci]]
                if options:
                    distance, _, original = min(options)  # closest; ties: the earliest kept row
                else:
                    kept[j] = True
                    by_sha[found["sha256"]] = row[ID_KEY]
            row["duplicate_of"], row["duplicate_distance"] = original, (distance if original is not None else None)
            out[i] = self._drop(row, original, distance, exact) if original is not None and drop else row
        if self.serving is not None:
            self._semantic_pass([rows[i] for i in good], kept, out, good, ctx)
        self._index.add(codes[kept])
        ids.extend(rows[good[j]][ID_KEY] for j in np.flatnonzero(kept).tolist())
        return out

    def _image(self, row: dict, ctx: StepContext) -> Any:
        field, paths, _ = row_image_paths(row, self.config["image_key"])
        return open_row_image(ctx, paths[0], field, row=row)

    def _semantic_pass(self, good_rows: list[dict], kept: Any, out: list[Outcome], good: list[int],
                       ctx: StepContext) -> None:
        """Compare the rows the hashes kept by CLIP embedding, against every row kept before them
        (earlier batches, then this batch in order); mark or drop the semantic duplicates."""
        import numpy as np

        limit = float(self.config["min_similarity"])
        candidates, images = [], []
        for j in np.flatnonzero(kept).tolist():
            try:
                images.append(self._image(good_rows[j], ctx))
                candidates.append(j)
            except ValueError as exc:
                kept[j] = False
                self._forget(good_rows[j])
                out[good[j]] = Failed(str(exc))
        if not candidates:
            return
        emb = self.serving.embed_images(images)
        prev_pos, prev_sim = self._semantic.best(emb)
        local = emb @ emb.T
        keep_sem = np.zeros(len(candidates), dtype=bool)
        for k, j in enumerate(candidates):
            options = [(float(prev_sim[k]), self._semantic.ids[int(prev_pos[k])])] if prev_pos[k] >= 0 else []
            earlier = np.flatnonzero(keep_sem[:k])
            if len(earlier):
                best = int(earlier[np.argmax(local[k, earlier])])
                options.append((float(local[k, best]), good_rows[candidates[best]][ID_KEY]))
            sim, original = max(options, key=lambda o: o[0]) if options else (-1.0, None)
            if original is None or sim < limit:
                keep_sem[k] = True
                continue
            row = good_rows[j]
            kept[j] = False
            self._forget(row)
            row["duplicate_of"], row["duplicate_similarity"] = original, round(sim, 4)
            if self.config["drop"]:
                out[good[j]] = Dropped(f"duplicate of row {original} (CLIP similarity {sim:.3f})",
                                       {"duplicate_of": original, "duplicate_similarity": round(sim, 4)})
        self._semantic.add(emb[keep_sem], [good_rows[candidates[k]][ID_KEY] for k in np.flatnonzero(keep_sem)])

    def _forget(self, row: dict) -> None:
        sha = row[self.config["hash_key"]]["sha256"]
        if self._by_sha.get(sha) == row[ID_KEY]:
            del self._by_sha[sha]

    @staticmethod
    def _drop(row: dict, original: str, distance: int, exact: bool) -> Dropped:
        how = "same file bytes" if exact else f"perceptual hashes {distance} bits apart"
        return Dropped(f"duplicate of row {original} ({how})", {"duplicate_of": original, "duplicate_distance": distance})
