"""ControlNet on tiny SD 1.5, SDXL and FLUX pipelines loaded with from_pretrained: the control
image steers the output, runs are deterministic, provenance names the ControlNet(s), scale(s) and
control image, and mismatched models fail before any work with the serving that fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError


def _rows(tmp_path: Path, h, kind: str, size=(48, 32), rid: str = "a") -> list[dict]:
    name = h.pattern(tmp_path / f"{kind}.png", size, kind)
    return [{"id": rid, "prompt": "a house by a lake", "control_image": name}]


def _image(run, rid: str = "a"):
    return run.image(run.by_id[rid]["images"][0])


@pytest.mark.parametrize("base", ["sd", "sdxl", "flux"])
def test_control_image_steers_the_output_deterministically(tmp_path: Path, models, addons, h, base, pixmill_run):
    serving = "flux" if base == "flux" else "diffusers"
    model = models[base] if base in models else addons[base]
    opts = {"serving": serving, "model": str(model), "controlnet": str(addons[f"{base}-controlnet"]), "steps": 2}
    if base == "flux":
        opts["max_sequence_length"] = 16
    stripes = pixmill_run(_rows(tmp_path, h, "stripes"), [("generate-images", opts)], "stripes")
    square = pixmill_run(_rows(tmp_path, h, "square"), [("generate-images", opts)], "square")
    again = pixmill_run(_rows(tmp_path, h, "stripes"), [("generate-images", opts)], "again")
    assert not stripes.failed and not square.failed
    a, b, c = (h.pixels(_image(r)) for r in (stripes, square, again))
    assert np.abs(a - b).mean() > 1, "a different control image must give a different image"
    assert np.array_equal(a, c), "the same command gives the same pixels"
    meta = stripes.by_id["a"]["images_meta"][0]
    assert meta["controlnet"] == str(addons[f"{base}-controlnet"]) and meta["controlnet_scale"] == 1.0
    assert meta["control_image"] == "stripes.png"
    # No size asked for: the output takes the control image's.
    assert _image(stripes).size == (48, 32)
    if serving == "diffusers":
        assert meta["pipeline"] == {"sd": "StableDiffusionControlNetPipeline",
                                    "sdxl": "StableDiffusionXLControlNetPipeline"}[base]


def test_controlnet_scale_zero_matches_a_control_free_controlnet_run(tmp_path: Path, models, addons, h, pixmill_run):
    """Scale 0 removes the ControlNet's contribution: two different control images then agree."""
    opts = {"serving": "diffusers", "model": str(models["sd"]), "controlnet": str(addons["sd-controlnet"]),
            "controlnet_scale": "0", "steps": 2}
    a = pixmill_run(_rows(tmp_path, h, "stripes"), [("generate-images", opts)], "a")
    b = pixmill_run(_rows(tmp_path, h, "square"), [("generate-images", opts)], "b")
    assert np.abs(h.pixels(_image(a)) - h.pixels(_image(b))).max() <= 1
    assert a.by_id["a"]["images_meta"][0]["controlnet_scale"] == 0.0


def test_several_controlnets_one_image_each_and_bad_rows_fail_alone(tmp_path: Path, models, addons, h, pixmill_run):
    stripes = h.pattern(tmp_path / "stripes.png", (32, 32), "stripes")
    square = h.pattern(tmp_path / "square.png", (32, 32), "square")
    nets = [str(addons["sd-controlnet"]), str(addons["sd-controlnet-2"])]
    rows = [{"id": "two", "prompt": "a cat", "edges": [stripes, square]},
            {"id": "one", "prompt": "a cat", "edges": stripes},
            {"id": "three", "prompt": "a cat", "edges": [stripes, square, stripes]},
            {"id": "none", "prompt": "a cat"},
            {"id": "missing", "prompt": "a cat", "edges": "nope.png"}]
    opts = {"serving": "diffusers", "model": str(models["sd"]), "controlnet": nets, "controlnet_scale": "0.5,1.5",
            "steps": 2, "control_key": "edges", "batch_size": 4}
    run = pixmill_run(rows, [("generate-images", opts)])
    assert set(run.by_id) == {"two", "one"}
    two = run.by_id["two"]["images_meta"][0]
    assert two["controlnet"] == nets and two["controlnet_scale"] == [0.5, 1.5]
    assert two["control_image"] == [stripes, square] and two["pipeline"] == "StableDiffusionControlNetPipeline"
    alone = pixmill_run([rows[0]], [("generate-images", opts)], "alone")
    assert (h.pixels(alone.image(alone.by_id["two"]["images"][0])) ==
            h.pixels(run.image(run.by_id["two"]["images"][0]))).all(), "each ControlNet gets its own image, batched or not"
    assert "3 control images for 2 ControlNets" in run.failed["three"]
    assert "field 'edges' holds no control image" in run.failed["none"]
    assert "nope.png" in run.failed["missing"] and "not found" in run.failed["missing"]


def test_controlnet_with_image_to_image(tmp_path: Path, models, addons, h, pixmill_run):
    photo = h.pattern(tmp_path / "photo.png", (32, 32), "noise")
    edges = h.pattern(tmp_path / "edges.png", (32, 32), "stripes")
    rows = [{"id": "a", "instruction": "make it night", "images": photo, "control_image": edges}]
    opts = {"serving": "diffusers", "model": str(models["sd"]), "controlnet": str(addons["sd-controlnet"]),
            "steps": 2, "strength": 0.7}
    run = pixmill_run(rows, [("edit-images", opts)])
    meta = run.by_id["a"]["edited_images_meta"][0]
    assert meta["pipeline"] == "StableDiffusionControlNetImg2ImgPipeline" and meta["control_image"] == edges
    assert run.image(run.by_id["a"]["edited_images"][0]).size == (32, 32)


def test_models_a_serving_cannot_drive_name_the_serving_that_can(tmp_path: Path, models, addons, pixmill_run):
    rows = [{"prompt": "x"}]
    with pytest.raises(ConfigError, match="--serving diffusers"):
        pixmill_run(rows, [("generate-images", {"serving": "flux", "model": str(models["sd"])})], "a")
    with pytest.raises(ConfigError, match="ControlNet for Stable Diffusion.*--serving diffusers"):
        pixmill_run(rows, [("generate-images", {"serving": "flux", "model": str(models["flux"]),
                                                "controlnet": str(addons["sd-controlnet"])})], "b")
    with pytest.raises(ConfigError, match="FLUX.1 ControlNet.*--serving flux"):
        pixmill_run(rows, [("generate-images", {"serving": "diffusers", "model": str(models["sd"]),
                                                "controlnet": str(addons["flux-controlnet"])})], "c")
    with pytest.raises(ConfigError, match="runs no ControlNet"):
        pixmill_run(rows, [("generate-images", {"serving": "diffusers", "model": str(models["sd"]),
                                                "control_key": "edges"})], "d")
    with pytest.raises(ConfigError, match="2 values for 1 ControlNets"):
        pixmill_run(rows, [("generate-images", {"serving": "diffusers", "model": str(models["sd"]),
                                                "controlnet": str(addons["sd-controlnet"]),
                                                "controlnet_scale": "1,2"})], "e")
    with pytest.raises(ConfigError, match="ControlNet folder .* does not exist"):
        pixmill_run(rows, [("generate-images", {"serving": "diffusers", "model": str(models["sd"]),
                                                "controlnet": str(tmp_path / "nowhere")})], "f")


def test_make_tiny_addon_kinds_load_with_from_pretrained(tmp_path: Path, models):
    from click.testing import CliRunner
    from pixmill.cli import build_cli

    def make(*args: str):
        return CliRunner().invoke(build_cli(), ["diffusers", "make-tiny", *args])

    missing = make(str(tmp_path / "x"), "--kind", "controlnet")
    assert missing.exit_code != 0 and "--base PIPELINE_DIR" in missing.output
    sdxl = make(str(tmp_path / "sdxl"), "--kind", "sdxl")
    assert sdxl.exit_code == 0, sdxl.output
    for kind in ("controlnet", "lora", "ip-adapter"):
        done = make(str(tmp_path / kind), "--kind", kind, "--base", str(models["sd"]))
        assert done.exit_code == 0 and "noise" in done.output, done.output
    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    assert type(StableDiffusionXLPipeline.from_pretrained(tmp_path / "sdxl")).__name__ == "StableDiffusionXLPipeline"
    assert ControlNetModel.from_pretrained(tmp_path / "controlnet").config.cross_attention_dim == 32
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert (tmp_path / "ip-adapter" / "ip-adapter.safetensors").is_file()
    assert (tmp_path / "ip-adapter" / "image_encoder" / "config.json").is_file()
