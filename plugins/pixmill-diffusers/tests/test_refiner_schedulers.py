"""The SDXL base + refiner handoff, scheduler settings and attention slicing on tiny models loaded
with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixmill.errors import ConfigError
from pixmill.serving import ImageRequest


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pixmill_diffusers.tiny import make_tiny

    root = tmp_path_factory.mktemp("sdxl")
    # The same seed: the refiner's VAE and second text encoder equal the base's, as in SDXL 1.0.
    return {kind: make_tiny(root / kind, kind) for kind in ("sdxl-base", "sdxl-refiner")}


def _count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_refiner_finishes_the_base_latents_in_one_call_each(sdxl):
    from pixmill_diffusers.auto import AutoDiffusersServing

    serving = AutoDiffusersServing(model=str(sdxl["sdxl-base"]), refiner=str(sdxl["sdxl-refiner"]),
                                   denoising_split=0.8, steps=10, width=64, height=64, devices="cpu", images_per_call=2)
    serving.check()
    serving.load()
    assert serving._refiner.vae is serving.pipe.vae  # shared, not loaded twice
    base_calls, refiner_calls = _count_calls(serving.pipe.unet), _count_calls(serving._refiner.unet)
    out = serving.generate([ImageRequest("a red fox", [1]), ImageRequest("a blue bird", [2])])
    # One batched call of each model: 8 base steps then 2 refiner steps (guidance runs in the same
    # forward), never the whole schedule twice.
    assert base_calls[0] == 8 and refiner_calls[0] == 2
    params = out[0][0].params
    assert params["model"] == str(sdxl["sdxl-base"]) and params["refiner"] == str(sdxl["sdxl-refiner"])
    assert params["denoising_split"] == 0.8 and params["refiner_pipeline"] == "StableDiffusionXLImg2ImgPipeline"
    assert out[0][0].image.size == (64, 64)


def test_refiner_runs_are_deterministic_and_differ_from_the_base_alone(tmp_path, sdxl, h, pixmill_run):
    rows = [{"id": "a", "prompt": "a red fox"}, {"id": "b", "prompt": "a blue bird"}]
    base = {"serving": "diffusers", "model": str(sdxl["sdxl-base"]), "steps": 4, "width": 64, "height": 64,
            "devices": "cpu"}
    refined = {**base, "refiner": str(sdxl["sdxl-refiner"]), "denoising_split": 0.5}
    one = pixmill_run(rows, [("generate-images", refined)], "one")
    two = pixmill_run(rows, [("generate-images", refined)], "two")
    alone = pixmill_run(rows, [("generate-images", base)], "alone")
    for r1, r2, r3 in zip(one.rows, two.rows, alone.rows, strict=True):
        p1, p2, p3 = (h.pixels(run.image(r["images"][0])) for run, r in ((one, r1), (two, r2), (alone, r3)))
        assert (p1 == p2).all()
        assert abs(p1 - p3).max() > 0
        assert r1["images_meta"][0]["refiner"] == str(sdxl["sdxl-refiner"])


def test_refiner_needs_a_base_that_can_stop_part_way(models, sdxl):
    from pixmill_diffusers.auto import AutoDiffusersServing

    serving = AutoDiffusersServing(model=str(models["sd"]), refiner=str(sdxl["sdxl-refiner"]), devices="cpu")
    with pytest.raises(ConfigError, match="needs a base pipeline that can stop part-way"):
        serving.load()
    with pytest.raises(ConfigError, match="outside 0..1"):
        AutoDiffusersServing(model=str(models["sd"]), refiner=str(sdxl["sdxl-refiner"]), denoising_split=1.2).check()


def test_scheduler_options_reach_the_scheduler_config_and_the_provenance(tmp_path, models, h, pixmill_run):
    rows = [{"id": "a", "prompt": "a red fox"}]
    opts = {"serving": "diffusers", "model": str(models["sd"]), "steps": 3, "width": 32, "height": 32,
            "devices": "cpu", "scheduler": "DPMSolverMultistepScheduler"}
    karras = {**opts, "scheduler_opt": ["use_karras_sigmas=true", "algorithm_type=dpmsolver++", "solver_order=2"]}
    run = pixmill_run(rows, [("generate-images", karras)], "karras")
    meta = run.rows[0]["images_meta"][0]
    assert meta["scheduler"] == "DPMSolverMultistepScheduler"
    assert meta["scheduler_options"] == {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++", "solver_order": 2}
    plain = pixmill_run(rows, [("generate-images", opts)], "plain")
    assert abs(h.pixels(run.image(run.rows[0]["images"][0])) - h.pixels(plain.image(plain.rows[0]["images"][0]))).max() > 0

    from pixmill_diffusers.auto import AutoDiffusersServing

    serving = AutoDiffusersServing(model=str(models["sd"]), devices="cpu",
                                   scheduler_opt=["timestep_spacing=trailing"])
    serving.load()  # no --scheduler: the setting applies to the checkpoint's own scheduler
    assert type(serving.pipe.scheduler).__name__ == "DDIMScheduler"
    assert serving.pipe.scheduler.config.timestep_spacing == "trailing"


def test_unknown_scheduler_setting_is_one_line_naming_the_valid_keys(models):
    from pixmill_diffusers.auto import AutoDiffusersServing

    with pytest.raises(ConfigError) as err:
        AutoDiffusersServing(model=str(models["sd"]), scheduler="EulerDiscreteScheduler",
                             scheduler_opt=["use_karras=true"]).check()
    text = str(err.value)
    assert "EulerDiscreteScheduler has no such setting" in text and "use_karras_sigmas" in text
    assert "\n" not in text
    # Without --scheduler the checkpoint's scheduler (DDIM here) is the one checked.
    with pytest.raises(ConfigError, match="DDIMScheduler has no such setting"):
        AutoDiffusersServing(model=str(models["sd"]), scheduler_opt=["algorithm_type=dpmsolver++"]).check()
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        AutoDiffusersServing(model=str(models["sd"]), scheduler_opt=["karras"]).check()
    with pytest.raises(ConfigError, match="use_karras_sigmas=maybe"):
        AutoDiffusersServing(model=str(models["sd"]), scheduler="EulerDiscreteScheduler",
                             scheduler_opt=["use_karras_sigmas=maybe"]).check()


def test_attention_slicing_slices_the_unet_attention_and_keeps_the_pixels(tmp_path, models, h, pixmill_run):
    from pixmill_diffusers.auto import AutoDiffusersServing

    serving = AutoDiffusersServing(model=str(models["sd"]), devices="cpu", attention_slicing=True)
    serving.load()
    kinds = {type(p).__name__ for p in serving.pipe.unet.attn_processors.values()}
    assert kinds == {"SlicedAttnProcessor"}
    rows = [{"id": "a", "prompt": "a red fox"}]
    opts = {"serving": "diffusers", "model": str(models["sd"]), "steps": 2, "width": 32, "height": 32, "devices": "cpu"}
    sliced = pixmill_run(rows, [("generate-images", {**opts, "attention_slicing": True})], "sliced")
    whole = pixmill_run(rows, [("generate-images", opts)], "whole")
    diff = abs(h.pixels(sliced.image(sliced.rows[0]["images"][0])) - h.pixels(whole.image(whole.rows[0]["images"][0])))
    assert diff.max() <= 1
