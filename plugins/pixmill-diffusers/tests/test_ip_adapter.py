"""IP-Adapter on tiny SD 1.5, SDXL and FLUX pipelines loaded with from_pretrained: scale 0 equals
no adapter, the reference image steers the output, batching rows with different references never
changes pixels, and provenance names the adapter and the reference images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError
from pixmill_diffusers.tiny_addons import IP_ADAPTER_WEIGHT_NAME


def _opts(models, addons, base: str, **extra) -> dict:
    model = models[base] if base in models else addons[base]
    opts = {"serving": "flux" if base == "flux" else "diffusers", "model": str(model), "steps": 2,
            "width": 32, "height": 32, **extra}
    if base == "flux":
        opts["max_sequence_length"] = 16
    return opts


def _adapter(addons, base: str, scale: float) -> dict:
    return {"ip_adapter": str(addons[f"{base}-ip-adapter"]), "ip_adapter_weight_name": IP_ADAPTER_WEIGHT_NAME,
            "ip_adapter_scale": scale}


@pytest.mark.parametrize("base", ["sd", "sdxl", "flux"])
def test_scale_zero_equals_no_adapter_and_references_steer(tmp_path: Path, models, addons, h, base, pixmill_run):
    stripes = h.pattern(tmp_path / "stripes.png", (40, 40), "stripes")
    noise = h.pattern(tmp_path / "noise.png", (40, 40), "noise")
    rows = [{"id": "a", "prompt": "a red bird", "reference_images": stripes},
            {"id": "b", "prompt": "a red bird", "reference_images": [noise]}]
    step = "generate-images"
    plain = pixmill_run(rows, [(step, _opts(models, addons, base))], "plain")
    off = pixmill_run(rows, [(step, _opts(models, addons, base, **_adapter(addons, base, 0.0)))], "off")
    on = pixmill_run(rows, [(step, _opts(models, addons, base, **_adapter(addons, base, 1.0)))], "on")
    px = {name: {rid: h.pixels(r.image(r.by_id[rid]["images"][0])) for rid in "ab"}
          for name, r in (("plain", plain), ("off", off), ("on", on))}
    assert np.abs(px["plain"]["a"] - px["off"]["a"]).max() <= 1, "scale 0 must equal no adapter"
    assert np.abs(px["plain"]["a"] - px["on"]["a"]).mean() > 1, "the adapter at scale 1 changes the image"
    # Same row id and prompt would give the same image; only the reference differs between a and b.
    rows_same = [{"id": "a", "prompt": "a red bird", "reference_images": noise}]
    other = pixmill_run(rows_same, [(step, _opts(models, addons, base, **_adapter(addons, base, 1.0)))], "ref")
    assert np.abs(px["on"]["a"] - h.pixels(other.image(other.by_id["a"]["images"][0]))).mean() > 1
    meta = on.by_id["b"]["images_meta"][0]
    assert meta["ip_adapter"] == str(addons[f"{base}-ip-adapter"]) and meta["ip_adapter_scale"] == 1.0
    assert meta["reference_images"] == [noise]


def test_rows_with_different_references_batch_without_changing_pixels(tmp_path: Path, models, addons, h, pixmill_run):
    refs = [h.pattern(tmp_path / f"{k}.png", (32, 32), k) for k in ("stripes", "square", "noise")]
    rows = [{"id": f"r{i}", "prompt": "a bird", "style": ref} for i, ref in enumerate(refs)]
    opts = _opts(models, addons, "sd", **_adapter(addons, "sd", 0.8))
    batched = pixmill_run(rows, [("generate-images", {**opts, "batch_size": 3, "reference_key": "style",
                                                      "images_per_prompt": 2})], "batched")
    alone = pixmill_run(rows, [("generate-images", {**opts, "reference_key": "style", "images_per_prompt": 2})],
              "alone")
    assert not batched.failed and len(batched.rows) == 3
    for rid in ("r0", "r1", "r2"):
        for k in range(2):
            a = batched.image(batched.by_id[rid]["images"][k])
            b = alone.image(alone.by_id[rid]["images"][k])
            assert np.array_equal(h.pixels(a), h.pixels(b))


def test_several_reference_images_and_missing_ones(tmp_path: Path, models, addons, h, pixmill_run):
    a = h.pattern(tmp_path / "a.png", (32, 32), "stripes")
    b = h.pattern(tmp_path / "b.png", (32, 32), "square")
    rows = [{"id": "two", "prompt": "a bird", "reference_images": [a, b]}, {"id": "none", "prompt": "a bird"}]
    run = pixmill_run(rows, [("generate-images", _opts(models, addons, "sd", **_adapter(addons, "sd", 1.0)))])
    assert run.by_id["two"]["images_meta"][0]["reference_images"] == [a, b]
    assert "field 'reference_images' holds no reference image" in run.failed["none"]


def test_ip_adapter_setup_errors_before_work(tmp_path: Path, models, addons, pixmill_run):
    rows = [{"prompt": "x"}]
    with pytest.raises(ConfigError, match="--ip-adapter-weight-name"):
        pixmill_run(rows, [("generate-images", _opts(models, addons, "sd",
                                                     ip_adapter=str(addons["sd-ip-adapter"])))], "a")
    with pytest.raises(ConfigError, match="do not exist"):
        pixmill_run(rows, [("generate-images", _opts(models, addons, "sd", ip_adapter=str(addons["sd-ip-adapter"]),
                                                     ip_adapter_weight_name="models/missing.safetensors"))], "b")
    with pytest.raises(ConfigError, match="has no IP-Adapter"):
        pixmill_run(rows, [("generate-images", _opts(models, addons, "sd", reference_key="style"))], "c")
