"""upscale-images over a real (PIL-resampling) upscale serving: field defaults, output shape,
provenance chaining, per-row failures, and the capability error.

The diffusers plugin's own tests run the same operator on tiny SD x4 and Real-ESRGAN models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl, write_jsonl
from pixmill import Storage
from pixmill.errors import ConfigError
from pixmill.ops.images import GenerateImages
from pixmill.ops.upscale import UpscaleImages
from pixmill.options import Option
from pixmill.serving import UPSCALE, GeneratedImage, Serving, UpscaleRequest
from pixmill_testing import png


class DoubleServing(Serving):
    """Upscales 2x with nearest-neighbour resampling (any asked scale is honoured); records the
    prompt it was given and the seed."""

    name = "double"
    capabilities = frozenset({UPSCALE})
    options = (Option("fail_on_width", int, None),)

    def upscale(self, requests: list[UpscaleRequest]) -> list[Any]:
        from PIL import Image

        out: list[Any] = []
        for req in requests:
            if req.image.width == self.config["fail_on_width"]:
                out.append(ValueError(f"cannot upscale a {req.image.width} px wide image"))
                continue
            scale = req.scale or 2
            size = (round(req.image.width * scale), round(req.image.height * scale))
            image = req.image.resize(size, Image.NEAREST)
            out.append([GeneratedImage(image=image, params={"serving": self.name, "scale": scale,
                                                            "prompt": req.prompt, "seed": req.seed})])
        return out


def _png(path: Path, size: tuple[int, int]) -> str:
    return png(path, (200, 30, 60), size).name


def _run(tmp_path: Path, rows: list[dict], op: Any, name: str = "run") -> tuple[list[dict], list[dict], Path]:
    inp = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / name
    with Storage(input=inp, out=out) as st:
        result = op.run(st.step())
        done = st.read()
    failed_file = out / result.folder / "failed.jsonl"
    return done, read_jsonl(failed_file) if failed_file.exists() else [], out


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_upscales_the_newest_images_in_place_and_chains_provenance(tmp_path: Path):
    rows = [
        {"prompt": "a red fox", "images": [_png(tmp_path / "a.png", (8, 6)), _png(tmp_path / "b.png", (4, 4))],
         "images_meta": [{"seed": 11}, {"seed": 12}]},
        {"prompt": "a cat", "images": [_png(tmp_path / "c.png", (5, 5))],
         "edited_images": [_png(tmp_path / "d.png", (6, 3))]},
    ]
    done, failed, out = _run(tmp_path, rows, UpscaleImages(serving=DoubleServing()))
    assert failed == []
    first, second = done
    assert [_size(out / p) for p in first["images"]] == [(16, 12), (8, 8)]
    assert first["images_meta"][0]["source_image"] == "a.png"
    assert first["images_meta"][1]["source"] == {"seed": 12}  # the original image's provenance kept
    assert first["images_meta"][0]["prompt"] == "a red fox"  # the row's prompt guides the upscaler
    # The newest images of a row are its edited ones: those are upscaled, the source images left alone.
    assert [_size(out / p) for p in second["edited_images"]] == [(12, 6)]
    assert second["images"] == ["c.png"]


def test_output_key_scale_and_a_bad_row_failing_alone(tmp_path: Path):
    rows = [{"image": _png(tmp_path / "a.png", (10, 8))},
            {"image": _png(tmp_path / "b.png", (7, 7))},
            {"image": "missing.png"},
            {"text": "no image"}]
    op = UpscaleImages(serving=DoubleServing(fail_on_width=7), output_key="big", scale=3)
    done, failed, out = _run(tmp_path, rows, op)
    assert len(done) == 1 and done[0]["image"] == "a.png"
    assert _size(out / done[0]["big"]) == (30, 24) and done[0]["big_meta"]["scale"] == 3
    reasons = sorted(f["reason"] for f in failed)
    assert len(reasons) == 3
    assert "cannot upscale a 7 px wide image" in reasons[0]
    assert any("'missing.png'" in r and "not found" in r for r in reasons)
    assert any("no images to upscale" in r and "--image-key" in r for r in reasons)


def test_same_input_same_seeds_and_files(tmp_path: Path):
    rows = [{"prompt": "x", "image": _png(tmp_path / "a.png", (4, 4))}]
    one, _, _ = _run(tmp_path, rows, UpscaleImages(serving=DoubleServing()), "one")
    two, _, _ = _run(tmp_path, rows, UpscaleImages(serving=DoubleServing()), "two")
    assert one[0]["image_meta"]["seed"] == two[0]["image_meta"]["seed"]
    assert one[0]["image"] == two[0]["image"]


def test_a_serving_without_the_capability_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="cannot do 'text-to-image'"):
        GenerateImages(serving=DoubleServing())
