"""The control-image operator: canny edges with OpenCV, written where generate-images looks for a
control image, so a source-image -> control -> ControlNet chain runs with no key options."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_canny_edges_follow_the_source_and_feed_a_controlnet(tmp_path: Path, models, addons, h, pixmill_run):
    square = h.pattern(tmp_path / "square.png", (48, 32), "square")
    rows = [{"id": "a", "prompt": "a box", "images": [square]},
            {"id": "bad", "prompt": "a box", "images": ["nope.png"]},
            {"id": "empty", "prompt": "a box"}]
    gen = {"serving": "diffusers", "model": str(models["sd"]), "controlnet": str(addons["sd-controlnet"]),
           "steps": 2, "output_key": "generated"}
    run = pixmill_run(rows, [("control-image", {"kind": "canny"}), ("generate-images", gen)])
    from pixmill import Run

    control_step = next(s for s in Run(run.out).steps if s.name.endswith("control-image"))
    first = {r["id"]: r for r in control_step.rows()}
    edges = h.pixels(run.image(first["a"]["control_image"]))
    assert edges.shape == (32, 48, 3)
    # White edges along the square's outline (x 12..36, y 8..24), black everywhere else.
    ys, xs = np.nonzero(edges[..., 0])
    assert len(ys) > 40 and set(np.unique(edges)) == {0, 255}
    on_outline = (np.abs(ys - 8) <= 1) | (np.abs(ys - 24) <= 1) | (np.abs(xs - 12) <= 1) | (np.abs(xs - 36) <= 1)
    assert on_outline.all()
    assert first["a"]["control_image_meta"]["kind"] == "canny"
    failures = {f["id"]: f["reason"] for f in control_step.failures()}
    assert "nope.png" in failures["bad"] and "no image in this row" in failures["empty"]
    out = run.by_id["a"]
    assert out["generated_meta"]["control_image"] == first["a"]["control_image"]
    assert run.image(out["generated"]).size == (48, 32)


def test_thresholds_change_the_edges(tmp_path: Path, h, pixmill_run):
    noise = h.pattern(tmp_path / "noise.png", (32, 32), "noise")
    rows = [{"id": "a", "image": noise}]
    loose = pixmill_run(rows, [("control-image", {"low_threshold": 10, "high_threshold": 50})], "loose")
    strict = pixmill_run(rows, [("control-image", {"low_threshold": 400, "high_threshold": 800})], "strict")
    many = (h.pixels(loose.image(loose.by_id["a"]["control_image"])) > 0).mean()
    few = (h.pixels(strict.image(strict.by_id["a"]["control_image"])) > 0).mean()
    assert many > few
