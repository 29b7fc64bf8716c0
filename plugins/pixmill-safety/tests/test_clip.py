"""clip serving, clip-score and aesthetic-score on a tiny random CLIP loaded offline through
from_pretrained."""

from __future__ import annotations

import pytest
from PIL import Image
from pixmill.errors import ConfigError
from pixmill.pipeline import StepSpec
from pixmill_safety.tiny import make_tiny_head
from pixmill_testing import read_jsonl


def test_scores_change_with_the_prompt_and_not_with_batch_size(tiny_clip, images, pixmill_run):
    step = {"serving": "clip", "model": str(tiny_clip)}
    small = pixmill_run(images, [StepSpec("clip-score", {**step, "batch_size": 1, "embed_batch": 1})], name="b1").rows
    big = pixmill_run(images, [StepSpec("clip-score", {**step, "batch_size": 6})], name="b6").rows
    assert [r["clip_score"] for r in small] == pytest.approx([r["clip_score"] for r in big], abs=1e-3)
    assert all(isinstance(r["clip_score"], float) and 0.0 <= r["clip_score"] <= 100.0 for r in big)
    other = [{**r, "prompt": "zzz totally different words"} for r in images]
    changed = pixmill_run(other, [StepSpec("clip-score", step)], name="other").rows
    assert [r["clip_score"] for r in changed] != [r["clip_score"] for r in big]


def test_aesthetic_head_loads_from_a_file_and_scores_every_image(tiny_clip, images, pixmill_run, tmp_path):
    head = make_tiny_head(tmp_path / "head.pth", dim=32)
    images.append({"images": ["img0.png", "img1.png"]})
    images.append({"images": ["missing.png"]})
    run = pixmill_run(images, [StepSpec("aesthetic-score", {"serving": "clip", "model": str(tiny_clip),
                                                                  "head": str(head)})])
    out, folder = run.rows, run.folder
    scores = [r["aesthetic"] for r in out]
    assert len(scores) == 7 and isinstance(scores[-1], list) and scores[-1] == pytest.approx(scores[:2], abs=1e-3)
    assert len({round(s, 4) for s in scores[:6]}) > 1  # images differ, so scores differ
    assert "missing.png" in read_jsonl(folder / "failed.jsonl")[0]["reason"]


def test_a_head_of_the_wrong_width_or_a_missing_head_is_a_one_line_error(tiny_clip, images, pixmill_run, tmp_path):
    wide = make_tiny_head(tmp_path / "wide.pth", dim=768)
    with pytest.raises(ConfigError, match="768-d embeddings"):
        pixmill_run(images[:1], [StepSpec("aesthetic-score", {"serving": "clip", "model": str(tiny_clip),
                                                            "head": str(wide)})], name="wide")
    with pytest.raises(ConfigError, match="not found"):
        pixmill_run(images[:1], [StepSpec("aesthetic-score", {"serving": "clip", "model": str(tiny_clip),
                                                            "head": str(tmp_path / "none.pth")})], name="none")


def test_drop_below_and_the_serving_embeds_normalised_vectors(tiny_clip, images, pixmill_run):
    from pixmill import get_serving

    serving = get_serving("clip", model=str(tiny_clip))
    serving.load()
    emb = serving.embed_images([Image.new("RGB", (50, 30), "red")])
    assert emb.shape == (1, 32) and abs(float((emb ** 2).sum()) - 1.0) < 1e-5
    run = pixmill_run(images, [StepSpec("clip-score", {"serving": "clip", "model": str(tiny_clip),
                                                             "drop_below": 101.0})], name="dropall")
    out, folder = run.rows, run.folder
    assert out == [] and len(read_jsonl(folder / "dropped.jsonl")) == 6
