"""upscale-images on tiny models loaded by their real loaders: the SD x4 upscaler through
``StableDiffusionUpscalePipeline.from_pretrained`` and Real-ESRGAN-family files through spandrel;
the highres-fix chain; the errors that name the right operator or serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pixmill_testing import write_jsonl


@pytest.fixture(scope="module")
def up_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pixmill_diffusers.tiny import make_tiny, make_tiny_esrgan

    root = tmp_path_factory.mktemp("upscalers")
    return {"sd-upscaler": make_tiny(root / "sd-upscaler", "sd-upscaler"),
            "sd": make_tiny(root / "sd", "sd"),
            "compact": make_tiny_esrgan(root / "compact-x4.pth", "compact", 4),
            "rrdb": make_tiny_esrgan(root / "rrdb-x2.safetensors", "rrdb", 2)}


def _png(path: Path, size: tuple[int, int], seed: int = 0) -> str:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def _sizes(run, field: str = "image") -> list[tuple[int, int]]:
    return [run.image(r[field]).size for r in run.rows]


def test_esrgan_gives_the_model_factor_and_the_asked_one(tmp_path, up_models, pixmill_run):
    rows = [{"id": f"r{i}", "image": _png(tmp_path / f"{i}.png", (20 + i, 12), i)} for i in range(3)]
    native = pixmill_run(rows, [("upscale-images", {"serving": "esrgan", "model": str(up_models["compact"]),
                                                    "devices": "cpu"})], "native")
    assert native.failed == {} and _sizes(native) == [(80, 48), (84, 48), (88, 48)]
    meta = native.rows[0]["image_meta"]
    assert meta["architecture"] == "RealESRGAN Compact" and meta["model_scale"] == 4
    assert meta["source_image"] == rows[0]["image"]
    asked = pixmill_run(rows, [("upscale-images", {"serving": "esrgan", "model": str(up_models["rrdb"]),
                                                   "devices": "cpu", "scale": 3})], "asked")
    assert _sizes(asked) == [(60, 36), (63, 36), (66, 36)]
    assert asked.rows[0]["image_meta"]["architecture"] == "ESRGAN"


def test_esrgan_tiles_join_without_seams(tmp_path, up_models, h, pixmill_run):
    rows = [{"id": "big", "image": _png(tmp_path / "big.png", (70, 45))}]
    opts = {"serving": "esrgan", "model": str(up_models["compact"]), "devices": "cpu"}
    whole = pixmill_run(rows, [("upscale-images", {**opts, "tile": 0})], "whole")
    tiled = pixmill_run(rows, [("upscale-images", {**opts, "tile": 16, "tile_overlap": 8})], "tiled")
    # The compact net sees 4 pixels around each pixel: 8 pixels of overlap give identical pixels.
    diff = abs(h.pixels(whole.image(whole.rows[0]["image"])) - h.pixels(tiled.image(tiled.rows[0]["image"])))
    assert diff.max() <= 1, diff.max()  # float rounding only


def test_sd_x4_upscaler_is_prompt_guided_seeded_and_sized(tmp_path, up_models, h, pixmill_run):
    rows = [{"id": f"r{i}", "prompt": f"a red fox {i}", "image": _png(tmp_path / f"{i}.png", (16, 12), i)}
            for i in range(3)]
    opts = {"serving": "diffusers", "model": str(up_models["sd-upscaler"]), "devices": "cpu", "steps": 2,
            "noise_level": 40}
    one = pixmill_run(rows, [("upscale-images", opts)], "one")
    assert one.failed == {} and _sizes(one) == [(64, 48)] * 3
    meta = one.rows[0]["image_meta"]
    assert meta["pipeline"] == "StableDiffusionUpscalePipeline" and meta["noise_level"] == 40
    assert meta["prompt"] == "a red fox 0" and meta["scale"] == 4
    two = pixmill_run(rows, [("upscale-images", {**opts, "batch_size": 2})], "two")
    for a, b in zip(one.rows, two.rows, strict=True):  # same seeds, any batching: the same pixels
        assert abs(h.pixels(one.image(a["image"])) - h.pixels(two.image(b["image"]))).max() <= 1
    half = pixmill_run(rows[:1], [("upscale-images", {**opts, "scale": 2})], "half")
    assert _sizes(half) == [(32, 24)]


def test_highres_fix_chain_generate_small_upscale_then_img2img(tmp_path, up_models, pixmill_run):
    rows = [{"id": "a", "prompt": "a lighthouse at dusk"}]
    sd = {"serving": "diffusers", "model": str(up_models["sd"]), "devices": "cpu", "steps": 2}
    run = pixmill_run(rows, [
        ("generate-images", {**sd, "width": 32, "height": 32}),
        ("upscale-images", {"serving": "esrgan", "model": str(up_models["compact"]), "devices": "cpu", "scale": 2}),
        ("edit-images", {**sd, "strength": 0.5, "input_key": "prompt"}),
    ])
    row = run.rows[0]
    assert run.image(row["edited_images"][0]).size == (64, 64)
    assert row["images_meta"][0]["source"]["serving"] == "diffusers"  # generated -> upscaled -> refined
    assert row["edited_images_meta"][0]["task"] == "img2img"


def test_upscaler_checkpoint_through_generate_names_upscale_images(up_models):
    from pixmill.errors import ConfigError
    from pixmill.ops.images import GenerateImages
    from pixmill.ops.upscale import UpscaleImages
    from pixmill_diffusers.auto import AutoDiffusersServing

    upscaler = str(up_models["sd-upscaler"])
    with pytest.raises(ConfigError) as err:
        GenerateImages(serving=AutoDiffusersServing(model=upscaler))
    assert f"upscale-images --serving diffusers --model {upscaler}" in err.value.fix
    with pytest.raises(ConfigError) as err:
        UpscaleImages(serving=AutoDiffusersServing(model=str(up_models["sd"])))
    assert "--serving esrgan" in err.value.fix


def test_esrgan_missing_file_fails_before_any_work(tmp_path):
    from pixmill.errors import ConfigError
    from pixmill_diffusers.esrgan import EsrganServing

    with pytest.raises(ConfigError, match="does not exist"):
        EsrganServing(model=str(tmp_path / "nope.pth")).check()


def test_esrgan_resumes_after_kill_9(tmp_path, up_models, h):
    rows = [{"id": f"r{i:03d}", "image": _png(tmp_path / f"{i}.png", (24, 24), i)} for i in range(150)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from pixmill.cli import main; main()", "run", "-q", "-i", str(inp), "-o", str(out),
           "upscale-images", "--serving", "esrgan", "--model", str(up_models["compact"]), "--devices", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def committed() -> list[dict]:
        return h.kept(out, 1)

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(committed()) < 20:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What the run kept: committed, or in the step's journal (committed first thing on the rerun).
    before = committed()
    assert 20 <= len(before) < 150
    mtimes = {r["image"]: (out / r["image"]).stat().st_mtime_ns for r in before}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = committed()
    assert sorted(r["id"] for r in after) == [r["id"] for r in rows]
    assert all((out / p).stat().st_mtime_ns == t for p, t in mtimes.items())
