"""dedupe-images --serving clip: semantic duplicates by CLIP embedding, on a tiny CLIP loaded offline."""

from __future__ import annotations

import pytest
from pixmill import get_serving
from pixmill.pipeline import StepSpec
from pixmill_testing import read_jsonl


def test_similarity_threshold_decides_and_the_figure_is_the_cosine(tmp_path, pixmill_run, tiny_clip, images):
    rows = [{"id": r["id"], "images": r["images"]} for r in images]
    serving = get_serving("clip", model=str(tiny_clip))
    serving.load()
    from PIL import Image

    emb = serving.embed_images([Image.open(tmp_path / f"img{i}.png").convert("RGB") for i in range(6)])
    sims = emb @ emb.T
    # A threshold between the closest pair and the rest: exactly the later image of that pair goes.
    pairs = sorted(((sims[a, b], a, b) for a in range(6) for b in range(a)), reverse=True)
    threshold = float((pairs[0][0] + pairs[1][0]) / 2)
    step = {"serving": "clip", "model": str(tiny_clip), "min_similarity": threshold, "drop": True}
    run = pixmill_run(rows, [StepSpec("dedupe-images", {**step, "batch_size": 2})], name="two")
    out, folder = run.rows, run.folder
    _, later, earlier = pairs[0]
    dropped = read_jsonl(folder / "dropped.jsonl")
    assert [d["id"] for d in dropped] == [f"img{later}"] and dropped[0]["duplicate_of"] == f"img{earlier}"
    assert dropped[0]["duplicate_similarity"] == pytest.approx(float(sims[later, earlier]), abs=1e-3)
    assert "CLIP similarity" in dropped[0]["reason"] and len(out) == 5
    # The same result when the pair meets inside one batch, and after a rerun.
    same = pixmill_run(rows, [StepSpec("dedupe-images", {**step, "batch_size": 100})], name="one").rows
    assert same == out
    again = pixmill_run(rows, [StepSpec("dedupe-images", {**step, "batch_size": 2})], name="two").rows
    assert again == out


def test_without_a_serving_nothing_is_semantic(pixmill_run, images):
    out = pixmill_run(images, [StepSpec("dedupe-images", {"min_similarity": -1.0})]).rows
    assert all(r["duplicate_of"] is None for r in out) and not any("duplicate_similarity" in r for r in out)
