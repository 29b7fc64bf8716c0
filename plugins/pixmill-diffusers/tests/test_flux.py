"""The flux serving through generate-images, on a tiny FLUX pipeline loaded with from_pretrained."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError

FAST = {"width": 32, "height": 32, "steps": 2}


def flux(models, **opts) -> dict:
    return {"serving": "flux", "model": str(models["flux"]), **FAST, **opts}


def test_generate_images_writes_pngs_with_full_provenance(tmp_path: Path, models, h, pixmill_run):
    rows = [{"id": "a", "prompt": "a red cat"}, {"id": "b", "prompt": ["a dog", "a bird"]},
            {"id": "c", "conversations": [{"role": "user", "content": "a boat"}]}]
    run = pixmill_run(rows, [("generate-images", flux(models, guidance=4.0, batch_size=3))])
    assert not run.failed
    a = run.by_id["a"]
    image = run.image(a["images"][0])
    assert image.size == (32, 32)
    assert h.pixels(image).std() > 5, "random weights still give a non-flat image"
    meta = a["images_meta"][0]
    assert meta["serving"] == "flux" and meta["model"] == str(models["flux"])
    assert meta["dtype"] == "float32", "bf16 is resolved to fp32 on the CPU"
    assert (meta["steps"], meta["guidance"], meta["width"], meta["height"]) == (2, 4.0, 32, 32)
    assert meta["max_sequence_length"] == 512 and meta["prompt_truncated"] is False
    assert meta["prompt"] == "a red cat" and isinstance(meta["seed"], int)
    assert [m["prompt"] for m in run.by_id["b"]["images_meta"]] == ["a dog", "a bird"]
    assert run.by_id["c"]["images_meta"][0]["prompt"] == "a boat"


def test_batching_never_changes_pixels_and_rows_never_share_noise(tmp_path: Path, models, h, pixmill_run):
    rows = [{"id": str(i), "prompt": "the same prompt"} for i in range(4)]
    one = pixmill_run(rows, [("generate-images", flux(models, batch_size=1))], "one")
    four = pixmill_run(rows, [("generate-images", flux(models, batch_size=4))], "four")
    other_seed = pixmill_run(rows[:1], [("generate-images", flux(models))], "other", seed=1)
    imgs1 = [h.pixels(one.image(one.by_id[str(i)]["images"][0])) for i in range(4)]
    imgs4 = [h.pixels(four.image(four.by_id[str(i)]["images"][0])) for i in range(4)]
    for a, b in zip(imgs1, imgs4, strict=True):
        assert np.abs(a - b).max() <= 1, "the same row gives the same image at batch size 1 and 4"
    assert np.abs(imgs1[0] - imgs1[1]).mean() > 5, "two rows with the same prompt get different noise"
    assert np.abs(imgs1[0] - h.pixels(other_seed.image(other_seed.by_id["0"]["images"][0]))).mean() > 5


def test_images_per_prompt_and_serving_default(tmp_path: Path, models, pixmill_run):
    rows = [{"id": "a", "prompt": "a cat"}]
    run = pixmill_run(rows, [("generate-images", flux(models, images_per_prompt=2))], "op")
    assert len(run.by_id["a"]["images"]) == 2
    seeds = [m["seed"] for m in run.by_id["a"]["images_meta"]]
    assert len(set(seeds)) == 2
    run2 = pixmill_run(rows, [("generate-images", flux(models, num_images_per_prompt=3))], "serving")
    assert len(run2.by_id["a"]["images"]) == 3
    # Same run seed, row and index -> the first two images are the very same.
    assert [m["seed"] for m in run2.by_id["a"]["images_meta"][:2]] == seeds


def test_sizes_round_to_multiples_of_16_with_a_warning(tmp_path: Path, models, caplog, pixmill_run):
    caplog.set_level(logging.WARNING, logger="pixmill.diffusers")
    run = pixmill_run([{"id": "a", "prompt": "x"}], [("generate-images", flux(models, width=50, height=40))])
    meta = run.by_id["a"]["images_meta"][0]
    assert (meta["width"], meta["height"]) == (48, 48)
    assert run.image(run.by_id["a"]["images"][0]).size == (48, 48)
    assert "width 50 is not a multiple of 16: using 48" in caplog.text


def test_long_prompts_are_truncated_with_a_warning_and_recorded(tmp_path: Path, models, caplog, pixmill_run):
    caplog.set_level(logging.WARNING, logger="pixmill.diffusers")
    long = "a very long prompt about a cat sitting on a mat"
    rows = [{"id": "long", "prompt": long}, {"id": "short", "prompt": "cat"}, {"id": "empty", "prompt": ""}]
    run = pixmill_run(rows, [("generate-images", flux(models, max_sequence_length=8, batch_size=3))])
    meta = run.by_id["long"]["images_meta"][0]
    assert meta["prompt_truncated"] is True and meta["max_sequence_length"] == 8
    assert meta["prompt"] == "a very lo", "the exact text the encoder saw (7 tokens + end token)"
    assert run.by_id["short"]["images_meta"][0]["prompt_truncated"] is False
    assert "truncated" in caplog.text
    assert "empty prompt" in run.failed["empty"], "an empty prompt fails its row, the batch goes on"


def test_missing_or_non_diffusers_model_fails_before_any_work(tmp_path: Path, pixmill_run):
    (tmp_path / "not-a-model").mkdir()
    for model, text in ((str(tmp_path / "nowhere"), "does not exist"),
                        (str(tmp_path / "not-a-model"), "no model_index.json")):
        with pytest.raises(ConfigError, match=text):
            pixmill_run([{"prompt": "x"}], [("generate-images", {"serving": "flux", "model": model})])
    assert not (tmp_path / "run").exists(), "nothing was started"


def test_uncached_hub_model_offline_says_how_to_download(tmp_path: Path, monkeypatch, pixmill_run):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="hf download black-forest-labs/FLUX.1-dev"):
        pixmill_run([{"prompt": "x"}], [("generate-images", {
            "serving": "flux", "model": "black-forest-labs/FLUX.1-dev", "cache_dir": str(tmp_path / "hf")})])


def test_local_dir_keeps_one_folder_per_model(tmp_path: Path, models, pixmill_run):
    import shutil

    local = tmp_path / "weights"
    shutil.copytree(models["flux"], local / "acme--tiny-flux@v1")
    run = pixmill_run([{"id": "a", "prompt": "x"}], [("generate-images", {
        "serving": "flux", "model": "acme/tiny-flux", "revision": "v1", "local_dir": str(local), **FAST})])
    assert run.by_id["a"]["images_meta"][0]["model"] == "acme/tiny-flux"
    assert run.by_id["a"]["images_meta"][0]["revision"] == "v1"
    with pytest.raises(ConfigError, match="is not in"):  # another revision is another folder
        pixmill_run([{"prompt": "x"}], [("generate-images", {
            "serving": "flux", "model": "acme/tiny-flux", "revision": "v2", "local_dir": str(local)})], "v2")


def test_memory_options_and_lora(tmp_path: Path, models, h, caplog, pixmill_run):
    from pixmill_diffusers.tiny import make_tiny_lora

    lora = make_tiny_lora(models["flux"], tmp_path / "lora-weights")
    rows = [{"id": "a", "prompt": "a cat"}]
    plain = pixmill_run(rows, [("generate-images", flux(models))], "plain")
    caplog.set_level(logging.WARNING, logger="pixmill.diffusers")
    saving = pixmill_run(rows, [("generate-images", flux(models, vae_slicing=True, cpu_offload=True))], "saving")
    assert "need a GPU: ignored on the CPU" in caplog.text
    base = h.pixels(plain.image(plain.by_id["a"]["images"][0]))
    assert np.abs(base - h.pixels(saving.image(saving.by_id["a"]["images"][0]))).max() <= 1
    tiled = pixmill_run(rows, [("generate-images", flux(models, vae_tiling=True))], "tiled")
    assert tiled.image(tiled.by_id["a"]["images"][0]).size == (32, 32)
    with_lora = pixmill_run(rows, [("generate-images", flux(models, lora=str(lora), lora_scale=0.8))], "lora")
    meta = with_lora.by_id["a"]["images_meta"][0]
    assert meta["lora"] == str(lora) and meta["lora_scale"] == 0.8
    assert np.abs(base - h.pixels(with_lora.image(with_lora.by_id["a"]["images"][0]))).mean() > 1, "LoRA changes the image"


def test_compile_runs_the_compiled_denoiser(tmp_path: Path, models, h, monkeypatch, caplog, pixmill_run):
    # The "eager" backend traces with TorchDynamo but skips code generation: the real compile path,
    # fast enough for a CPU test. GPU runs use the default inductor backend.
    monkeypatch.setenv("PIXMILL_COMPILE_BACKEND", "eager")
    rows = [{"id": "a", "prompt": "a cat"}]
    plain = pixmill_run(rows, [("generate-images", flux(models))], "plain")
    caplog.set_level(logging.INFO, logger="pixmill.diffusers")
    compiled = pixmill_run(rows, [("generate-images", flux(models, compile=True))], "compiled")
    assert "compiled the transformer (backend eager)" in caplog.text
    a = h.pixels(plain.image(plain.by_id["a"]["images"][0]))
    b = h.pixels(compiled.image(compiled.by_id["a"]["images"][0]))
    assert np.abs(a - b).max() <= 2


def test_two_cpu_worker_processes_share_the_queue(tmp_path: Path, models, h, pixmill_run):
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(6)]
    single = pixmill_run(rows, [("generate-images", flux(models))], "single")
    multi = pixmill_run(rows, [("generate-images", flux(models, devices="cpu,cpu"))], "multi")
    assert not multi.failed and len(multi.rows) == 6
    for i in range(6):
        a = h.pixels(single.image(single.by_id[str(i)]["images"][0]))
        b = h.pixels(multi.image(multi.by_id[str(i)]["images"][0]))
        assert np.abs(a - b).max() <= 1, "a worker process makes the same pixels as the main process"


def test_make_tiny_command(tmp_path: Path):
    from click.testing import CliRunner
    from pixmill.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["diffusers", "make-tiny", str(tmp_path / "k"), "--kind", "flux-kontext"])
    assert result.exit_code == 0, result.output
    assert "noise" in result.output
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(tmp_path / "k")
    assert type(pipe).__name__ == "FluxKontextPipeline"


@pytest.fixture
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch


@pytest.mark.gpu
def test_gpu_bf16_offload_and_all_gpus(tmp_path: Path, models, cuda, pixmill_run):
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(2 * cuda.cuda.device_count())]
    run = pixmill_run(rows, [("generate-images", flux(models, cpu_offload=True))])
    assert not run.failed and run.by_id["0"]["images_meta"][0]["dtype"] == "bfloat16"
    run = pixmill_run(rows, [("generate-images", flux(models, sequential_offload=True))], "seq")
    assert not run.failed
