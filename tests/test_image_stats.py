"""image-stats through the real runner: header figures, pixel figures, blank drops recorded."""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from helpers import read_jsonl, step_rows, write_jsonl
from PIL import Image, ImageDraw, ImageFilter
from pixmill.ops.gray_figures import LUMA_WEIGHTS, gray_pil, opencv, pixel_figures
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


def _encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@functools.cache
def _varied_images() -> dict[str, bytes]:
    """Every PNG kind the OpenCV path takes or hands back to PIL, JPEGs, sizes that get reduced,
    images too small for a Laplacian, flat ones, hard edges that clip the Laplacian."""
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))
    checker = _checker(256)
    rgba = noise.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8)))
    with_transparency = noise.copy()
    with_transparency.info["transparency"] = (1, 2, 3)
    out = {
        "rgb": _encoded(noise), "rgba": _encoded(rgba), "gray": _encoded(noise.convert("L")),
        "palette": _encoded(noise.convert("P")), "gray+alpha": _encoded(noise.convert("LA")),
        "rgb+trns": _encoded(with_transparency, transparency=(1, 2, 3)),
        "gray+trns": _encoded(noise.convert("L"), transparency=7),
        "16-bit gray": _encoded(Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16))),
        "bilevel": _encoded(noise.convert("1")), "interlaced": _encoded(noise, optimize=False),
        "checker": _encoded(checker), "checker jpeg": _encoded(checker, "JPEG", quality=85),
        "big (reduced)": _encoded(noise.resize((2300, 1500))), "big jpeg": _encoded(noise.resize((2300, 1500)), "JPEG"),
        "2x2": _encoded(Image.new("RGB", (2, 2), (10, 200, 30))), "flat": _encoded(Image.new("RGB", (64, 64), (40, 40, 40))),
        "webp": _encoded(noise, "WEBP"), "gif": _encoded(noise, "GIF"),
    }
    return out


def test_opencv_and_pil_give_the_same_figures_to_the_last_bit():
    pytest.importorskip("cv2")  # installed with pixmill-safety; the core itself needs only PIL
    assert opencv() is not None, "this OpenCV converts to gray with other weights: the fast path is off"
    for name, data in _varied_images().items():
        for max_side in (1024, 64, 0):
            fast = pixel_figures(data, max_side, 4.0, use_opencv=True)
            alone = pixel_figures(data, max_side, 4.0, use_opencv=False)
            assert fast == alone, (name, max_side)
    # A one-pixel checkerboard: every Laplacian is +-1020, clipped to 127 / -128: the top of the scale
    pixel_checker = Image.fromarray(((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8))
    assert pixel_figures(_encoded(pixel_checker), 1024, 4.0)["blur"] == 127.5**2


def test_gray_is_bt601_luma_with_15_bit_weights():
    """Every one of the 2**24 colours, through PIL alone (OpenCV's conversion is checked against the
    same formula when the fast path turns on)."""
    v = np.arange(2**24, dtype=np.uint32).reshape(4096, 4096)
    rgb = np.stack([v >> 16, (v >> 8) & 255, v & 255], axis=-1)
    want = (rgb @ np.array(LUMA_WEIGHTS, dtype=np.uint32) + 2**14) >> 15
    img = Image.fromarray(rgb.astype(np.uint8))
    img.format = "PNG"
    assert np.array_equal(np.asarray(gray_pil(img, 0)), want)
    for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50)):
        figures = pixel_figures(_encoded(Image.new("RGB", (16, 16), colour)), 1024, 4.0)
        assert figures["brightness"] == (sum(c * w for c, w in zip(colour, LUMA_WEIGHTS, strict=True)) + 2**14) >> 15
        assert figures["contrast"] == 0 and figures["blur"] == 0 and figures["blank"]


def test_both_png_decoders_and_pil_give_the_same_gray():
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("pyspng")
    from pixmill.ops.gray_figures import gray_fast, plain_png, png_decoders

    assert png_decoders() == ("spng", "opencv")
    checked = 0
    for name, data in _varied_images().items():
        if not plain_png(data):
            continue
        want = np.asarray(gray_pil(Image.open(io.BytesIO(data)), 0))
        for decoder in png_decoders():
            assert np.array_equal(gray_fast(cv2, data, decoder), want), (name, decoder)
        checked += 1
    assert checked >= 8  # rgb, rgba, gray, both transparent-colour kinds, interlaced, checker, big, flat...
    assert gray_fast(cv2, b"\x89PNG\r\n\x1a\n" + bytes(30), "spng") is None  # damaged: PIL says why


def test_process_pool_and_in_process_give_the_same_rows(tmp_path, tmp_path_factory):
    for i, data in enumerate(_varied_images().values()):
        (tmp_path / f"img{i}").write_bytes(data)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40))
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    _checker(32).save(outside)
    rows = [{"image": f"img{i}"} for i in range(len(_varied_images()))]
    rows += [{"image": "broken.png"}, {"image": "missing.png"}, {"image": str(outside)}]
    out = {}
    for workers in (2, 1):
        inp = write_jsonl(tmp_path / f"in{workers}.jsonl", [{**r, "image": str(tmp_path / r["image"])} for r in rows])
        results = run_pipeline(PipelineSpec(steps=[StepSpec("image-stats", {"workers": workers})], input=inp,
                                            out=tmp_path / f"run{workers}"))
        folder = tmp_path / f"run{workers}" / results[-1].folder
        failed = {f["id"]: f["reason"] for f in read_jsonl(folder / "failed.jsonl")}
        out[workers] = ([r["image_stats"] for r in step_rows(tmp_path / f"run{workers}")], failed)
    assert out[2] == out[1]
    figures, failed = out[2]
    assert len(figures) == len(rows) - 3 and all("blur" in f for f in figures)
    n = len(rows)
    assert "cannot be read" in failed[str(n - 3)] and "not found" in failed[str(n - 2)]
    assert "secret.png" in failed[str(n - 1)] and "--allow-root" in failed[str(n - 1)]  # the roots rule: never read
