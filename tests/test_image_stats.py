"""image-stats through the real runner: header figures, pixel figures, blank drops recorded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from helpers import read_jsonl, step_rows, write_jsonl
from PIL import Image, ImageDraw, ImageFilter
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill.run import FILTERED, Run


def _checker(size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for x in range(0, size, 16):
        for y in range(0, size, 16):
            if (x // 16 + y // 16) % 2:
                draw.rectangle((x, y, x + 15, y + 15), fill="black")
    return img


def _run(tmp_path: Path, rows: list[dict], **options) -> tuple[list[dict], Path]:
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    results = run_pipeline(PipelineSpec(steps=[StepSpec("image-stats", options)], input=inp, out=tmp_path / "run"))
    folder = tmp_path / "run" / results[-1].folder
    return step_rows(tmp_path / "run"), folder


def test_figures_match_what_the_files_hold(tmp_path):
    sharp = _checker(128)
    sharp.save(tmp_path / "sharp.png")
    sharp.filter(ImageFilter.GaussianBlur(4)).save(tmp_path / "blurry.png")
    Image.new("RGB", (300, 100), (40, 40, 40)).save(tmp_path / "blank.jpg", quality=90)
    rows = [{"images": ["sharp.png"]}, {"images": ["blurry.png"]}, {"image": "blank.jpg"},
            {"images": ["sharp.png", "blank.jpg"]}]
    out, _ = _run(tmp_path, rows)
    sharp_s, blurry_s, blank_s, both = (r["image_stats"] for r in out)
    assert (sharp_s["width"], sharp_s["height"], sharp_s["format"]) == (128, 128, "png")
    assert sharp_s["bytes"] == (tmp_path / "sharp.png").stat().st_size
    assert sharp_s["sha256"] == hashlib.sha256((tmp_path / "sharp.png").read_bytes()).hexdigest()
    assert 120 < sharp_s["brightness"] < 135 and sharp_s["contrast"] > 100
    assert sharp_s["blur"] > 10 * blurry_s["blur"]  # the blurred copy scores far lower
    assert not sharp_s["blank"] and blank_s["blank"]
    assert (blank_s["width"], blank_s["aspect"], blank_s["format"]) == (300, 3.0, "jpeg")
    assert isinstance(both, list) and [s["format"] for s in both] == ["png", "jpeg"]


def test_header_only_and_bad_rows_fail_alone(tmp_path):
    _checker(64).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    rows = [{"image": "ok.png"}, {"image": "broken.png"}, {"image": "missing.png"}, {"caption": "no image"}]
    out, folder = _run(tmp_path, rows, pixels=False)
    assert len(out) == 1 and "blur" not in out[0]["image_stats"] and out[0]["image_stats"]["width"] == 64
    reasons = {f["id"]: f["reason"] for f in read_jsonl(folder / "failed.jsonl")}
    assert "'broken.png'" in reasons["1"] and "cannot be read" in reasons["1"]
    assert "'missing.png'" in reasons["2"] and "not found" in reasons["2"]
    assert "--image-key" in reasons["3"]


def test_drop_blank_records_why_and_the_gallery_shows_it(tmp_path):
    _checker(64).save(tmp_path / "ok.png")
    Image.new("RGB", (64, 64), "white").save(tmp_path / "white.png")
    out, folder = _run(tmp_path, [{"image": "ok.png"}, {"image": "white.png"}], drop_blank=True)
    assert [r["image"] for r in out] == ["ok.png"]
    dropped = read_jsonl(folder / "dropped.jsonl")
    assert dropped[0]["id"] == "1" and "near-blank" in dropped[0]["reason"]
    view_rows = [r for r in Run(tmp_path / "run").statuses() if r.status == FILTERED]
    assert [r.row["image"] for r in view_rows] == ["white.png"]
    assert "near-blank" in view_rows[0].reason and view_rows[0].row["blank"] is True
