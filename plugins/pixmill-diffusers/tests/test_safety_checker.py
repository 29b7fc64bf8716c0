"""--safety-checker: the checkpoint's own safety checker kept and its verdict recorded per image."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixmill.errors import ConfigError


def _sd_with_checker(folder: Path, threshold: float) -> Path:
    """The tiny SD pipeline plus a tiny random StableDiffusionSafetyChecker whose concept
    thresholds flag everything (negative) or nothing (large)."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from pixmill_diffusers.tiny import build_tiny
    from transformers import CLIPConfig, CLIPImageProcessorPil

    pipe = build_tiny("sd")
    config = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                         num_hidden_layers=1),
                        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                           num_hidden_layers=1, image_size=32, patch_size=8),
                        projection_dim=32)
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    pipe.register_modules(safety_checker=checker,
                          feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}))
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("threshold,flagged", [(-10.0, True), (10.0, False)])
def test_verdict_recorded_per_image(tmp_path: Path, threshold, flagged, pixmill_run):
    model = _sd_with_checker(tmp_path / "sd-checker", threshold)
    step = {"serving": "diffusers", "model": str(model), "steps": 2, "width": 32, "height": 32,
            "safety_checker": True, "images_per_prompt": 2}
    run = pixmill_run([{"id": "a", "prompt": "a cat"}], [("generate-images", step)])
    metas = run.by_id["a"]["images_meta"]
    assert [m["nsfw_detected"] for m in metas] == [flagged, flagged]
    if flagged:  # the pipeline blacks out what its checker flags
        assert run.image(run.by_id["a"]["images"][0]).getextrema() == ((0, 0), (0, 0), (0, 0))


def test_without_the_option_the_checker_is_not_loaded(tmp_path: Path, models, pixmill_run):
    model = _sd_with_checker(tmp_path / "sd-checker", -10.0)
    step = {"serving": "diffusers", "model": str(model), "steps": 2, "width": 32, "height": 32}
    run = pixmill_run([{"id": "a", "prompt": "a cat"}], [("generate-images", step)])
    meta = run.by_id["a"]["images_meta"][0]
    assert "nsfw_detected" not in meta
    assert run.image(run.by_id["a"]["images"][0]).getextrema() != ((0, 0), (0, 0), (0, 0))
    step = {"serving": "diffusers", "model": str(models["sd"]), "safety_checker": True, "steps": 2}
    with pytest.raises(ConfigError, match="has no safety checker"):
        pixmill_run([{"prompt": "a cat"}], [("generate-images", step)], name="plain")
