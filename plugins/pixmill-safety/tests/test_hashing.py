"""The batched perceptual hashes are imagehash's, bit for bit; the process pool and the in-process
path give the same rows, and a bad file fails its row alone either way."""

from __future__ import annotations

import io
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw
from pixmill.context import StepContext
from pixmill.operator import Failed
from pixmill.plugins import get_registry
from pixmill_safety.hashing import _rgb_png_gray, hash_input, hashes_from_inputs, perceptual_hash, work_gray
from pixmill_safety.samples import near_copies, scene


def _encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _corpus(tmp_path: Path) -> list[bytes]:
    """Scenes and their near copies, flat images (every AC coefficient ~0: the median is a tie),
    gradients, noise, odd sizes and modes: where a rounding difference would flip a bit."""
    out = []
    for s in range(12):
        img = scene(s, side=96 + 40 * s)
        out.append(_encoded(img))
        out += [(tmp_path / name).read_bytes() for name in near_copies(img, tmp_path, f"s{s}").values()]
    for v in (0, 1, 40, 127, 128, 254, 255):
        out += [_encoded(Image.new("L", (64, 64), v)), _encoded(Image.new("RGB", (300, 200), (v, v // 2, 255 - v)))]
    out += [_encoded(Image.new("RGB", (3, 2), (9, 9, 9))), _encoded(Image.linear_gradient("L")),
            _encoded(Image.radial_gradient("L")), _encoded(Image.new("RGBA", (50, 70), (10, 200, 30, 0)))]
    rng = np.random.default_rng(7)
    for _ in range(12):
        h, w = (int(x) for x in rng.integers(8, 400, 2))
        out.append(_encoded(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "JPEG", quality=80))
    stripes = Image.new("L", (1200, 900), 0)
    draw = ImageDraw.Draw(stripes)
    for x in range(0, 1200, 40):
        draw.rectangle((x, 0, x + 19, 899), fill=255)
    out += [_encoded(stripes), _encoded(stripes.convert("RGB"), "JPEG", quality=90)]  # reduced / drafted
    return out


@pytest.mark.parametrize(("method", "reference"), [("phash", imagehash.phash), ("dhash", imagehash.dhash)])
def test_batched_hashes_are_imagehash_bit_for_bit(tmp_path, method, reference):
    corpus = _corpus(tmp_path)
    want = [str(reference(work_gray(data))) for data in corpus]
    assert hashes_from_inputs([hash_input(data, method) for data in corpus], method) == want
    assert [perceptual_hash(data, method) for data in corpus[:20]] == want[:20]  # a batch of one too
    assert len(set(want)) >= 30  # distinct pictures, distinct hashes: the check is not vacuous


def test_rgb_pngs_decoded_by_libspng_give_pil_s_own_gray(tmp_path):
    pngs = [data for data in _corpus(tmp_path) if data[:4] == b"\x89PNG" and data[25] == 2]
    assert len(pngs) > 30
    for data in pngs:
        with Image.open(io.BytesIO(data)) as img:
            want = img.convert("L")
        factor = min(want.size) // 128
        want = want.reduce(factor) if factor > 1 else want
        assert _rgb_png_gray(data) is not None  # the libspng path, not PIL's, was taken
        assert np.array_equal(np.asarray(work_gray(data)), np.asarray(want))


def test_process_pool_and_in_process_reads_give_the_same_rows(tmp_path, tmp_path_factory):
    for s in range(20):
        scene(s, side=128).save(tmp_path / f"s{s}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after")
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    scene(99, side=64).save(outside)
    rows = [{"id": str(s), "image": f"s{s}.png"} for s in range(20)]
    rows[5] = {"id": "5", "image": "missing.png"}
    rows[9] = {"id": "9", "image": "broken.png"}
    rows[12] = {"id": "12", "image": str(outside)}
    ctx = StepContext(run_dir=tmp_path, step_dir=tmp_path, input_dir=tmp_path)
    op = get_registry().get_operator("dedupe-images")
    pooled = op(workers=2)._hashes([dict(r) for r in rows], ctx)
    alone = op(workers=1)._hashes([dict(r) for r in rows], ctx)
    assert [str(x) if isinstance(x, Failed) else x for x in pooled] == \
        [str(x) if isinstance(x, Failed) else x for x in alone]
    assert "not found" in pooled[5].reason and "'missing.png'" in pooled[5].reason
    assert "cannot be read" in pooled[9].reason and "'broken.png'" in pooled[9].reason
    assert "secret.png" in pooled[12].reason and "--allow-root" in pooled[12].reason  # never read
    good = [h for h in pooled if not isinstance(h, Failed)]
    assert len(good) == 17 and all(h["phash"] == perceptual_hash((tmp_path / f"s{i}.png").read_bytes())
                                   for i, h in zip([i for i in range(20) if i not in (5, 9, 12)], good, strict=True))
