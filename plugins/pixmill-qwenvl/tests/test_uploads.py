"""What the model sees is the same whatever the engine: uploads sent as they are when they fit, else
resized once (the resize the in-process engines use) and encoded losslessly; each file once a step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pixmill.image_files import probe_image
from pixmill.pipeline import StepSpec
from pixmill.serving import ChatRequest
from pixmill_qwenvl.engines.hf import TransformersEngine, load_processor
from pixmill_qwenvl.engines.vllm_engine import build_vllm_inputs
from pixmill_qwenvl.serving import QwenVLServing
from pixmill_testing.openai_server import FakeOpenAIServer

LO, HI = 4 * 784, 16 * 784
ANSWER = '{"rationale": "ok", "prompt_alignment": 8, "visual_quality": 8, "overall": 8}'


def _noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8), mode)


def _inputs(folder: Path) -> list[Path]:
    """One image that fits (odd size: the processor rounds it), one too large (a JPEG), one RGBA."""
    folder.mkdir(parents=True, exist_ok=True)
    fits, large, rgba = folder / "fits.png", folder / "large.jpg", folder / "rgba.png"
    _noise((90, 60), seed=1).save(fits)
    _noise((300, 200), seed=2).save(large, quality=90)
    _noise((70, 50), "RGBA", seed=3).save(rgba)
    return [fits, large, rgba]


class _Capturing:
    """The real processor, remembering the images it was handed."""

    def __init__(self, processor):
        self._processor = processor
        self.images: list = []

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, images=None, **kwargs):
        self.images.extend(images or [])
        return self._processor(*args, images=images, **kwargs)


def _arrays(images) -> list[np.ndarray]:
    return [np.asarray(im.convert("RGB")) for im in images]


def test_the_three_engines_see_the_same_pixels_for_a_row(tmp_path, tiny_model, pixmill_run):
    paths = _inputs(tmp_path / "images")
    row = {"id": "r", "prompt": "a photo", "image": [f"images/{p.name}" for p in paths]}
    with FakeOpenAIServer(chat_handler=lambda rec: ANSWER) as server:
        run = pixmill_run([row], [StepSpec("judge", {
            "serving": "qwen-vl", "engine": "openai", "base_url": server.url, "model": "m",
            "min_pixels": LO, "max_pixels": HI})])
        sent = server.requests[0].images
    assert run.step_by_id(1)["r"]["scores"]["overall"] == 8.0
    # The image that fits goes byte for byte; the others were prepared, as lossless PNGs.
    assert sent[0] == paths[0].read_bytes()
    assert [Image.open(io.BytesIO(b)).format for b in sent] == ["PNG", "PNG", "PNG"]
    over_http = _arrays(Image.open(io.BytesIO(b)) for b in sent)

    config = {**QwenVLServing(engine="transformers", model=str(tiny_model), min_pixels=LO, max_pixels=HI).config,
              "device": "cpu"}
    processor = _Capturing(load_processor(str(tiny_model)))
    engine = TransformersEngine(config, processor=processor)
    engine.load()
    parts = [{"type": "image", "image": probe_image(p)} for p in paths] + [{"type": "text", "text": "score"}]
    request = ChatRequest([{"role": "user", "content": parts}], max_tokens=2)
    answer = engine.chat([request])[0]
    assert not isinstance(answer, Exception), answer
    vllm_images = build_vllm_inputs(request, processor.tokenizer, LO, HI)["multi_modal_data"]["image"]

    for name, seen in (("transformers", _arrays(processor.images)), ("vllm", _arrays(vllm_images))):
        assert [a.shape for a in seen] == [a.shape for a in over_http], name
        assert all(np.array_equal(a, b) for a, b in zip(seen, over_http, strict=True)), f"{name} saw other pixels"
    assert over_http[0].shape == (60, 90, 3)  # within the bounds: as it is (the processor rounds to 28)
    assert over_http[1].shape[0] % 28 == 0 and over_http[1].shape[0] * over_http[1].shape[1] <= HI


def test_a_file_shared_by_many_rows_is_prepared_once_per_step(tmp_path):
    source = tmp_path / "source.png"
    _noise((800, 600), seed=4).save(source)  # too large for the bounds: resized in the upload pool
    with FakeOpenAIServer(chat_handler=lambda rec: ANSWER) as server:
        serving = QwenVLServing(engine="openai", base_url=server.url, model="m", min_pixels=LO, max_pixels=HI)
        serving.load()
        try:
            requests = [ChatRequest([{"role": "user", "content": [
                {"type": "image", "image": probe_image(source)}, {"type": "text", "text": f"row {i}"}]}])
                for i in range(12)]
            answers = serving.chat(requests)
            prepared = serving.http.uploads.prepared
        finally:
            serving.unload()
        sent = [r.images[0] for r in server.requests]
    assert not [a for a in answers if isinstance(a, Exception)]
    assert prepared == 1
    assert len(sent) == 12 and len(set(sent)) == 1
    assert Image.open(io.BytesIO(sent[0])).size[0] * Image.open(io.BytesIO(sent[0])).size[1] <= HI


def test_upload_format_jpeg_sends_jpeg_at_the_given_quality(tmp_path, pixmill_run):
    _noise((300, 200), seed=5).save(tmp_path / "big.png")
    row = {"id": "r", "prompt": "a photo", "image": str(tmp_path / "big.png")}
    sizes = {}
    for quality in (30, 95):
        with FakeOpenAIServer(chat_handler=lambda rec: ANSWER) as server:
            pixmill_run([row], [StepSpec("judge", {"serving": "qwen-vl", "engine": "openai", "base_url": server.url,
                                                   "model": "m", "min_pixels": LO, "max_pixels": HI,
                                                   "upload_format": "jpeg", "upload_quality": quality})],
                        name=f"q{quality}")
            data = server.requests[0].images[0]
        assert Image.open(io.BytesIO(data)).format == "JPEG"
        sizes[quality] = len(data)
    assert sizes[30] < sizes[95]
