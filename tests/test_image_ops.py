"""generate-images / edit-images over a real (small, numpy-drawn) serving, and the one-worker-per-
device process pool (two CPU workers stand in for two GPUs).

The serving here is a real Serving subclass: it draws an image from each seed, so seeds, file
names, provenance and failures can be checked without a model. The diffusers plugin's own tests
run the same operators on tiny FLUX/SD pipelines.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl, write_jsonl
from pixmill import Storage
from pixmill.errors import PixmillError, RowError
from pixmill.executor import StepTask
from pixmill.ops.images import EditImages, GenerateImages
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, TEXT_TO_IMAGE, EditRequest, GeneratedImage, ImageRequest, Serving


def _draw(seed: int, size: tuple[int, int] = (16, 12)) -> Any:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


class PaintServing(Serving):
    """Draws noise from each seed; ``die_on`` makes the worker process exit on that prompt and
    ``encoded`` returns JPEG bytes instead of a PIL image."""

    name = "paint"
    capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT})
    options = (
        Option("devices", str, None, cache=False),
        Option("die_on", str, None, cache=False),
        Option("fail_load", bool, False, cache=False),
        Option("encoded", bool, False),
        Option("num_images_per_prompt", int, None),
        Option("delay", float, 0.0, cache=False),
    )

    def devices(self) -> list[str]:
        return [d for d in (self.config["devices"] or "").split(",") if d]

    def images_per_prompt(self) -> int | None:
        return self.config["num_images_per_prompt"]

    def use_device(self, device: str) -> None:
        self.device = device

    def load(self) -> None:
        if self.config["fail_load"]:
            raise RuntimeError("weights not found")
        self.loaded_in = os.getpid()

    def _images(self, prompt: str, seeds: list[int], extra: dict) -> list[GeneratedImage] | Exception:
        if prompt == self.config["die_on"]:
            os._exit(3)  # a crash that no try/except sees, like a driver fault or the OOM killer
        if prompt == "refuse":
            return RowError("the serving refused this prompt")
        out = []
        for seed in seeds:
            params = {"serving": self.name, "seed": seed, "prompt": prompt, "pid": os.getpid(), **extra}
            if self.config["encoded"]:
                import io

                buf = io.BytesIO()
                _draw(seed).save(buf, format="JPEG")
                out.append(GeneratedImage(data=buf.getvalue(), suffix=".jpg", params=params))
            else:
                out.append(GeneratedImage(image=_draw(seed), params=params))
        return out

    def generate(self, requests: list[ImageRequest]) -> list:
        time.sleep(self.config["delay"])  # stands in for GPU time, so both workers get batches
        return [self._images(r.prompt, r.seeds, {"negative_prompt": r.negative_prompt}) for r in requests]

    def edit(self, requests: list[EditRequest]) -> list:
        return [self._images(r.prompt, r.seeds, {"inputs": [list(im.size) for im in r.images],
                                                 "mask": r.mask is not None}) for r in requests]


def _run(tmp_path: Path, rows: list[dict], op, name: str = "run", seed: int = 0) -> tuple[list[dict], list[dict], Path]:
    inp = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / name
    with Storage(input=inp, out=out, seed=seed) as st:
        result = op.run(st.step())
        done = st.read()
    failed_file = out / result.folder / "failed.jsonl"
    failed = read_jsonl(failed_file) if failed_file.exists() else []
    return done, failed, out


def _pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


# -- generate-images ----------------------------------------------------------------------------
def test_generate_writes_pngs_with_provenance_and_fails_bad_rows_alone(tmp_path: Path):
    rows = [
        {"id": "a", "prompt": "a red cat"},
        {"id": "b", "prompt": ["subject one", "subject two"]},
        {"id": "c", "conversations": [{"role": "user", "content": "a boat at dawn"}]},
        {"id": "d", "prompt": "   "},
        {"id": "e", "caption": "no prompt field"},
        {"id": "f", "prompt": "refuse"},
    ]
    done, failed, out = _run(tmp_path, rows, GenerateImages(serving=PaintServing(), batch_size=4, output_key="image"))
    by_id = {r["id"]: r for r in done}
    assert set(by_id) == {"a", "b", "c"}
    # One prompt -> one path and one provenance dict; a list of prompts -> lists in prompt order.
    assert isinstance(by_id["a"]["image"], str) and by_id["a"]["image"].endswith(".png")
    assert (out / by_id["a"]["image"]).is_file()
    assert by_id["a"]["image_meta"]["prompt"] == "a red cat"
    assert [m["prompt"] for m in by_id["b"]["image_meta"]] == ["subject one", "subject two"]
    assert len(by_id["b"]["image"]) == 2 and all((out / p).is_file() for p in by_id["b"]["image"])
    assert by_id["c"]["image_meta"]["prompt"] == "a boat at dawn"  # DataFlow-MM conversations
    # File names come from the row id and index, never from the prompt text.
    assert all("cat" not in p and "subject" not in p for r in done for p in ([r["image"]] if isinstance(r["image"], str) else r["image"]))
    reasons = {f["id"]: f["reason"] for f in failed}
    assert "empty prompt" in reasons["d"]
    assert "prompt, conversations" in reasons["e"] and "--input-key" in reasons["e"]
    assert "refused" in reasons["f"]


def test_seeds_derive_from_run_seed_row_and_index(tmp_path: Path):
    rows = [{"id": str(i), "prompt": "same prompt"} for i in range(4)]
    op = GenerateImages(serving=PaintServing(), images_per_prompt=2, output_key="img")
    done1, _, out1 = _run(tmp_path, rows, op, "one", seed=7)
    done2, _, out2 = _run(tmp_path, rows, op.with_options(batch_size=3), "two", seed=7)
    done3, _, out3 = _run(tmp_path, rows, op, "three", seed=8)
    seeds = [m["seed"] for r in done1 for m in r["img_meta"]]
    assert len(set(seeds)) == 8, "every image of every row has its own seed"
    assert [m["index"] for m in done1[0]["img_meta"]] == [0, 1]
    for r1, r2, r3 in zip(done1, done2, done3, strict=True):
        for p1, p2, p3 in zip(r1["img"], r2["img"], r3["img"], strict=True):
            assert _pixels(out1 / p1) == _pixels(out2 / p2), "batch size must not change pixels"
            assert _pixels(out1 / p1) != _pixels(out3 / p3), "another run seed gives other images"


def test_serving_default_images_per_prompt_and_encoded_bytes_saved_as_is(tmp_path: Path):
    rows = [{"id": "x", "prompt": "p"}]
    done, _, out = _run(tmp_path, rows, GenerateImages(serving=PaintServing(num_images_per_prompt=3, encoded=True)))
    paths = done[0]["images"]
    assert len(paths) == 3 and all(p.endswith(".jpg") for p in paths)
    assert (out / paths[0]).read_bytes()[:2] == b"\xff\xd8", "JPEG bytes from an API are written unchanged"


# -- edit-images --------------------------------------------------------------------------------
def test_edit_images_reads_one_or_several_images_and_fails_missing_ones(tmp_path: Path):
    _draw(1, (20, 10)).save(tmp_path / "in1.png")
    _draw(2, (8, 8)).save(tmp_path / "in2.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [
        {"id": "one", "instruction": "make it blue", "images": "in1.png"},
        {"id": "two", "instruction": "put them together", "images": ["in1.png", "in2.png"], "mask": "in2.png"},
        {"id": "gone", "instruction": "x", "images": ["missing.png"]},
        {"id": "bad", "instruction": "x", "images": "broken.png"},
        {"id": "none", "instruction": "x", "images": []},
        {"id": "empty", "instruction": "", "images": "in1.png"},
    ]
    op = EditImages(serving=PaintServing(), mask_key="mask", batch_size=10, output_key="edited_image")
    done, failed, out = _run(tmp_path, rows[:1] + rows[2:], op, "plain")
    assert [r["id"] for r in done] == ["one"]
    meta = done[0]["edited_image_meta"]
    assert meta["inputs"] == [[20, 10]] and meta["mask"] is False
    assert (out / done[0]["edited_image"]).is_file()
    reasons = {f["id"]: f["reason"] for f in failed}
    assert "missing.png" in reasons["gone"] and "not found" in reasons["gone"]
    assert "broken.png" in reasons["bad"] and "cannot be read" in reasons["bad"]
    assert "holds no image" in reasons["none"]
    assert "empty prompt" in reasons["empty"]
    # Several reference images go to the serving in order, with the mask.
    done2, failed2, _ = _run(tmp_path, [rows[1]], op, "multi")
    assert not failed2
    assert done2[0]["edited_image_meta"]["inputs"] == [[20, 10], [8, 8]]
    assert done2[0]["edited_image_meta"]["mask"] is True


# -- one worker process per device --------------------------------------------------------------
def _importable_serving():
    """PaintServing from a module that worker processes can import by name (tests/ is on
    sys.path through the pytest config, and spawned workers inherit sys.path)."""
    return importlib.import_module("test_image_ops").PaintServing


def test_two_cpu_workers_make_the_same_images_as_one_process(tmp_path: Path):
    Paint = _importable_serving()
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(12)]
    single, _, out1 = _run(tmp_path, rows, GenerateImages(serving=Paint(), batch_size=2, output_key="image"), "single")
    multi, failed, out2 = _run(tmp_path, rows, GenerateImages(serving=Paint(devices="cpu,cpu", delay=0.5), batch_size=2,
                                                              output_key="image"), "multi")
    assert not failed and len(multi) == 12
    pids = {r["image_meta"]["pid"] for r in multi}
    assert len(pids) == 2 and os.getpid() not in pids, "both worker processes took batches"
    a = {r["id"]: _pixels(out1 / r["image"]) for r in single}
    b = {r["id"]: _pixels(out2 / r["image"]) for r in multi}
    assert a == b


def test_a_dying_worker_fails_only_its_batch_and_the_run_goes_on(tmp_path: Path):
    Paint = _importable_serving()
    rows = [{"id": str(i), "prompt": "boom" if i == 5 else f"prompt {i}"} for i in range(16)]
    op = GenerateImages(serving=Paint(devices="cpu,cpu", die_on="boom"), batch_size=2)
    done, failed, _ = _run(tmp_path, rows, op)
    assert {f["id"] for f in failed} == {"4", "5"}, "only the batch holding the fatal row fails"
    assert "died" in failed[0]["reason"] and "exited with code 3" in failed[0]["reason"]
    assert len(done) == 14


def test_workers_that_cannot_load_stop_the_step_with_the_reason(tmp_path: Path):
    Paint = _importable_serving()
    with pytest.raises(PixmillError, match="weights not found"):
        _run(tmp_path, [{"id": "0", "prompt": "p"}], GenerateImages(serving=Paint(devices="cpu,cpu", fail_load=True)))


def test_the_pool_reads_batches_lazily(tmp_path: Path):
    from pixmill.builtins.process_pool import DevicePool
    from pixmill.context import StepContext

    Paint = _importable_serving()
    (tmp_path / "step").mkdir()
    ctx = StepContext(run_dir=tmp_path, step_dir=tmp_path / "step", input_dir=tmp_path)
    read = []

    def batches():
        for i in range(40):
            read.append(i)
            yield [{"id": str(i), "prompt": f"p{i}"}]

    task = StepTask(GenerateImages(serving=Paint()), ctx)
    pool = DevicePool(task, ["cpu", "cpu"])
    stream = pool.map(batches())
    next(stream)
    # Two workers, each running one batch with one more queued: never the whole input.
    assert len(read) <= 4 + 1
    rest = list(stream)
    assert len(rest) == 39 and len(read) == 40


def test_a_dataflow_mm_list_placeholder_stays_a_list(tmp_path: Path):
    rows = [{"id": "a", "conversations": [{"role": "user", "content": "a fox"}], "images": [""]},
            {"id": "b", "conversations": [{"role": "user", "content": "a kite"}]}]
    done, failed, out = _run(tmp_path, rows, GenerateImages(serving=PaintServing()))  # no key options
    by_id = {r["id"]: r for r in done}
    assert not failed
    assert isinstance(by_id["a"]["images"], list) and len(by_id["a"]["images"]) == 1
    assert (out / by_id["a"]["images"][0]).is_file() and isinstance(by_id["a"]["images_meta"], list)
    assert isinstance(by_id["b"]["images"], list), "images is a list, as in DataFlow-MM, placeholder or not"
