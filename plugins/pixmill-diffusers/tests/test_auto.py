"""The diffusers serving (AutoPipeline classes) on a tiny Stable Diffusion pipeline: text-to-image,
image-to-image, inpainting, scheduler, negative prompt, LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError


def sd(models, **opts) -> dict:
    return {"serving": "diffusers", "model": str(models["sd"]), "steps": 2, **opts}


def test_text_to_image_with_scheduler_and_negative_prompt(tmp_path: Path, models, pixmill_run):
    rows = [{"id": "a", "prompt": "a cat", "neg": "blurry"}, {"id": "b", "prompt": "a cat"}]
    run = pixmill_run(rows, [("generate-images", sd(models, width=40, height=32, negative_key="neg",
                                                    scheduler="EulerDiscreteScheduler", batch_size=2))])
    assert not run.failed
    a, b = run.by_id["a"]["images_meta"][0], run.by_id["b"]["images_meta"][0]
    assert a["pipeline"] == "StableDiffusionPipeline" and a["scheduler"] == "EulerDiscreteScheduler"
    assert a["negative_prompt"] == "blurry" and b["negative_prompt"] is None
    assert (a["width"], a["height"], a["steps"], a["guidance"]) == (40, 32, 2, 7.5)
    assert run.image(run.by_id["a"]["images"][0]).size == (40, 32)


def test_bad_scheduler_fails_before_work(tmp_path: Path, models, pixmill_run):
    with pytest.raises(ConfigError, match="no such scheduler"):
        pixmill_run([{"prompt": "x"}], [("generate-images", sd(models, scheduler="FastestScheduler"))])


def test_image_to_image_and_inpainting(tmp_path: Path, models, pixmill_run):
    from PIL import Image

    Image.new("RGB", (48, 32), (250, 250, 250)).save(tmp_path / "in.png")
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (0, 0, 24, 32))
    mask.save(tmp_path / "mask.png")
    rows = [{"id": "i2i", "instruction": "a dark room", "images": "in.png"},
            {"id": "inp", "instruction": "a dark room", "images": "in.png", "mask": "mask.png"},
            {"id": "many", "instruction": "x", "images": ["in.png", "in.png"]}]
    run = pixmill_run(rows, [("edit-images", sd(models, strength=0.6, mask_key="mask", batch_size=3))])
    i2i, inp = run.by_id["i2i"]["edited_images_meta"][0], run.by_id["inp"]["edited_images_meta"][0]
    assert i2i["task"] == "img2img" and i2i["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert inp["task"] == "inpaint" and inp["pipeline"] == "StableDiffusionInpaintPipeline"
    assert i2i["strength"] == 0.6 and (i2i["width"], i2i["height"]) == (48, 32)
    assert run.image(run.by_id["inp"]["edited_images"][0]).size == (48, 32)
    assert "takes exactly one" in run.failed["many"]


def test_lora_weights_and_scale_change_the_images(tmp_path: Path, models, h, pixmill_run):
    from pixmill_diffusers.tiny import make_tiny_lora

    lora = make_tiny_lora(models["sd"], tmp_path / "lora")
    rows = [{"id": "a", "prompt": "a cat"}]
    base = pixmill_run(rows, [("generate-images", sd(models, width=32, height=32))], "base")
    full = pixmill_run(rows, [("generate-images", sd(models, width=32, height=32, lora=str(lora)))], "full")
    off = pixmill_run(rows, [("generate-images", sd(models, width=32, height=32, lora=str(lora),
                                                     lora_scale=0.0))], "off")
    px = {name: h.pixels(r.image(r.by_id["a"]["images"][0])) for name, r in (("base", base), ("full", full), ("off", off))}
    assert np.abs(px["base"] - px["full"]).mean() > 1
    assert np.abs(px["base"] - px["off"]).max() <= 1, "scale 0 turns the LoRA off"
    assert full.by_id["a"]["images_meta"][0]["lora_scale"] == 1.0
