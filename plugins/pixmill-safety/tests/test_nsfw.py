"""detect-nsfw: the real nudenet ONNX model over real decoded images."""

from __future__ import annotations

from PIL import Image
from pixmill.pipeline import StepSpec
from pixmill_safety.nsfw import EXPLICIT, LABELS, NudeNetDetector
from pixmill_safety.samples import scene
from pixmill_testing import read_jsonl


def test_every_row_gets_scores_in_range_and_a_corrupt_image_fails_alone(tmp_path, pixmill_run):
    rows = []
    for i in range(5):
        scene(i, side=320 + 40 * i).save(tmp_path / f"s{i}.png")
        rows.append({"images": [f"s{i}.png"]})
    Image.new("RGB", (200, 120), (210, 170, 150)).save(tmp_path / "skin.jpg")  # non-square, JPEG
    rows.append({"image": "skin.jpg"})
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    rows.append({"images": ["corrupt.png"]})
    rows.append({"images": ["s0.png", "s1.png"]})
    run = pixmill_run(rows, [StepSpec("detect-nsfw", {"batch_size": 3, "boxes": True})])
    out, folder = run.rows, run.folder
    assert len(out) == 7
    figures = [f for r in out for f in (r["nsfw"] if isinstance(r["nsfw"], list) else [r["nsfw"]])]
    assert len(figures) == 8 and isinstance(out[-1]["nsfw"], list)
    for fig in figures:
        assert 0.0 <= fig["score"] <= 1.0
        assert all(label in LABELS and 0.0 <= s <= 1.0 for label, s in fig["labels"].items())
        assert fig["score"] == max([fig["labels"].get(k, 0.0) for k in EXPLICIT], default=0.0)
    failed = read_jsonl(folder / "failed.jsonl")
    assert [f["id"] for f in failed] == ["6"] and "corrupt.png" in failed[0]["reason"]


def test_batching_does_not_change_the_scores_and_detections_are_real():
    import numpy as np

    detector = NudeNetDetector(threads=1)
    images = [np.asarray(scene(i, side=256)) for i in range(4)]
    one_by_one = [detector.detect([im])[0] for im in images]
    together = detector.detect(images)
    for a, b in zip(one_by_one, together, strict=True):
        assert [d["label"] for d in a] == [d["label"] for d in b]
        assert np.allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-3)
    # The model really runs: its raw output has one row per box candidate with 4 + 18 values.
    blob, _ = detector.preprocess(images[0])
    raw = detector.session.run(None, {detector.input_name: blob})[0]
    assert raw.shape[1] == 4 + len(LABELS) and raw.shape[2] > 1000


def test_drop_above_records_the_score(tmp_path, pixmill_run):
    scene(1).save(tmp_path / "a.png")
    run = pixmill_run([{"image": "a.png"}], [StepSpec("detect-nsfw", {"drop_above": 0.0})])
    out, folder = run.rows, run.folder
    assert out == []
    dropped = read_jsonl(folder / "dropped.jsonl")
    assert dropped[0]["reason"].startswith("nsfw score") and 0.0 <= dropped[0]["nsfw_score"] <= 1.0
