"""The flux-kontext serving through edit-images, on a tiny FluxKontextPipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def kontext(models, **opts) -> dict:
    return {"serving": "flux-kontext", "model": str(models["flux-kontext"]), "steps": 2, **opts}


def _image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> str:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return path.name


def test_output_keeps_the_input_aspect_ratio_at_the_pixel_budget(tmp_path: Path, models, pixmill_run):
    wide = _image(tmp_path / "wide.png", (200, 100), (200, 20, 20))
    tall = _image(tmp_path / "tall.png", (60, 120), (20, 200, 20))
    rows = [{"id": "w", "instruction": "make it blue", "images": wide},
            {"id": "t", "instruction": "make it blue", "images": [tall]}]
    run = pixmill_run(rows, [("edit-images", kontext(models, max_area=64 * 64, batch_size=2))])
    assert not run.failed
    assert run.image(run.by_id["w"]["edited_images"][0]).size == (96, 48)   # 2:1 at ~4096 pixels
    assert run.image(run.by_id["t"]["edited_images"][0]).size == (48, 96)   # 1:2
    meta = run.by_id["w"]["edited_images_meta"][0]
    assert meta["input_size"] == [200, 100] and meta["serving"] == "flux-kontext"
    assert (meta["width"], meta["height"], meta["guidance"]) == (96, 48, 2.5)
    # width x height is the budget when max_area is not given
    run2 = pixmill_run(rows[:1], [("edit-images", kontext(models, width=64, height=64))], "budget")
    assert run2.image(run2.by_id["w"]["edited_images"][0]).size == (96, 48)


def test_several_reference_images_need_an_explicit_combine(tmp_path: Path, models, pixmill_run):
    a = _image(tmp_path / "a.png", (64, 64), (255, 0, 0))
    b = _image(tmp_path / "b.png", (32, 64), (0, 0, 255))
    rows = [{"id": "two", "instruction": "put them in one scene", "images": [a, b]},
            {"id": "one", "instruction": "make it night", "images": [a]},
            {"id": "lost", "instruction": "x", "images": ["nope.png"]}]
    run = pixmill_run(rows, [("edit-images", kontext(models, max_area=48 * 48, batch_size=3))], "plain")
    assert "--combine side-by-side" in run.failed["two"], "the reason names the option to set"
    assert "nope.png" in run.failed["lost"] and "not found" in run.failed["lost"]
    assert "one" in run.by_id
    run = pixmill_run(rows[:1], [("edit-images", kontext(models, max_area=48 * 48, combine="side-by-side"))],
            "combined")
    meta = run.by_id["two"]["edited_images_meta"][0]
    assert meta["input_size"] == [96, 64] and meta["reference_images"] == 2 and meta["combine"] == "side-by-side"
    img = run.image(run.by_id["two"]["edited_images"][0])
    assert img.size[0] > img.size[1], "the side-by-side conditioning image is wide, and so is the output"
    stacked = pixmill_run(rows[:1], [("edit-images", kontext(models, max_area=48 * 48, combine="stacked"))],
                "stacked")
    assert stacked.by_id["two"]["edited_images_meta"][0]["input_size"] == [64, 192]


def test_generate_then_edit_chain(tmp_path: Path, models, h, pixmill_run):
    rows = [{"id": str(i), "prompt": f"a cat number {i}", "instruction": "make it night"} for i in range(3)]
    run = pixmill_run(rows, [
        ("generate-images", {"serving": "flux", "model": str(models["flux"]), "width": 48, "height": 32, "steps": 2}),
        ("edit-images", kontext(models, max_area=48 * 32)),
    ])
    assert not run.failed and len(run.rows) == 3
    row = run.by_id["1"]
    assert row["images"][0].startswith("01-") and row["edited_images"][0].startswith("02-")
    assert run.image(row["edited_images"][0]).size == (48, 32)
    before, after = h.pixels(run.image(row["images"][0])), h.pixels(run.image(row["edited_images"][0]))
    assert np.abs(before - after).mean() > 1
