"""control-image --kind depth / pose: tiny random-weight transformers estimators loaded from their
folders exactly as real checkpoints are, the maps they make, and the chain into a ControlNet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pixmill.errors import ConfigError
from pixmill_testing import write_jsonl


def _control_step(run):
    from pixmill import Run

    step = next(s for s in Run(run.out).steps if s.name.endswith("control-image"))
    return {r["id"]: r for r in step.rows()}, {f["id"]: f["reason"] for f in step.failures()}


def _rows(tmp_path: Path, h) -> list[dict]:
    wide = h.pattern(tmp_path / "wide.png", (48, 32), "noise")
    tall = h.pattern(tmp_path / "tall.png", (24, 40), "square")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return [{"id": "wide", "image": wide}, {"id": "tall", "image": tall},
            {"id": "corrupt", "image": "corrupt.png"}, {"id": "both", "images": [wide, tall]}]


def test_depth_maps_have_the_source_size_and_follow_the_source(tmp_path: Path, estimators, h, pixmill_run):
    run = pixmill_run(_rows(tmp_path, h), [("control-image", {"kind": "depth", "model": str(estimators["depth"]),
                                                                  "model_batch": 3})])
    rows, failures = _control_step(run)
    wide, tall = run.image(rows["wide"]["control_image"]), run.image(rows["tall"]["control_image"])
    assert wide.size == (48, 32) and tall.size == (24, 40)
    with __import__("PIL").Image.open(run.out / rows["wide"]["control_image"]) as raw:
        assert raw.mode == "RGB"
    pixels = h.pixels(wide)
    # A grey map stretched over the full 8-bit range, the same in all three channels.
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert pixels.min() == 0 and pixels.max() == 255
    # The corrupt file fails its row only; a row with two images gets two maps, one per source.
    assert set(rows) == {"wide", "tall", "both"} and "corrupt.png" in failures["corrupt"]
    both = [run.image(p) for p in rows["both"]["control_image"]]
    assert [im.size for im in both] == [(48, 32), (24, 40)]
    assert (h.pixels(both[0]) == pixels).all() and (h.pixels(both[1]) == h.pixels(tall)).all()
    assert rows["wide"]["control_image_meta"] == {"kind": "depth", "model": str(estimators["depth"]),
                                                   "source": [rows["wide"]["image"]]}

    # Same command, fresh folder: the same maps. A different source: a different map.
    again = pixmill_run(_rows(tmp_path, h), [("control-image", {"kind": "depth",
                                                                    "model": str(estimators["depth"])})], "again")
    assert (h.pixels(again.image(_control_step(again)[0]["wide"]["control_image"])) == pixels).all()
    stripes = h.pattern(tmp_path / "stripes.png", (48, 32), "stripes")
    other = pixmill_run([{"id": "wide", "image": stripes}],
                  [("control-image", {"kind": "depth", "model": str(estimators["depth"])})], "other")
    assert (h.pixels(other.image(other.by_id["wide"]["control_image"])) != pixels).any()


def test_depth_maps_put_near_bright_whatever_the_model_predicts():
    from pixmill_diffusers.depth_estimation import depth_to_image

    inverse_depth = np.array([[1.0, 2.0], [3.0, 5.0]])  # relative models: near = large
    grey = np.asarray(depth_to_image(inverse_depth))[..., 0]
    assert grey.tolist() == [[0, 63], [127, 255]]
    metres = np.array([[1.0, 2.0], [3.0, 5.0]])  # metric models: near = small
    assert np.asarray(depth_to_image(metres, near_is_large=False))[..., 0].tolist() == [[255, 191], [127, 0]]
    assert np.asarray(depth_to_image(np.full((2, 2), 4.0))).max() == 0


def test_depth_map_drives_a_depth_controlnet(tmp_path: Path, models, addons, estimators, h, pixmill_run):
    """control-image --kind depth -> generate-images --controlnet: no key options, and the depth map
    (not just its presence) reaches the ControlNet."""
    gen = {"serving": "diffusers", "model": str(models["sd"]), "controlnet": str(addons["sd-controlnet"]),
           "steps": 2, "output_key": "generated"}
    depth = {"kind": "depth", "model": str(estimators["depth"])}
    outputs = []
    for kind in ("noise", "square"):
        source = h.pattern(tmp_path / f"{kind}.png", (48, 32), kind)
        run = pixmill_run([{"id": "a", "prompt": "a room", "image": source}],
                    [("control-image", depth), ("generate-images", gen)], kind)
        control = _control_step(run)[0]["a"]["control_image"]
        out = run.by_id["a"]
        assert out["generated_meta"]["control_image"] == control
        assert out["generated_meta"]["controlnet"] == str(addons["sd-controlnet"])
        image = run.image(out["generated"])
        assert image.size == (48, 32)
        outputs.append(h.pixels(image))
    assert (outputs[0] != outputs[1]).any()


def test_pose_skeleton_and_keypoints(tmp_path: Path, estimators, h, pixmill_run):
    rows = _rows(tmp_path, h)
    pose = {"kind": "pose", "model": str(estimators["pose"]), "keypoint_threshold": 0.0}
    run = pixmill_run(rows, [("control-image", pose)])
    found, failures = _control_step(run)
    assert "corrupt.png" in failures["corrupt"]
    meta = found["wide"]["control_image_meta"]
    # Without a detector the whole image is one person; every COCO keypoint is recorded with its score.
    assert meta["kind"] == "pose" and meta["keypoint_threshold"] == 0.0 and len(meta["people"]) == 1
    person = meta["people"][0]
    assert person["box"] == [0.0, 0.0, 48.0, 32.0] and person["box_score"] is None
    assert len(person["keypoints"]) == 17 and {"nose", "left_ankle", "right_wrist"} <= set(person["keypoints"])
    # (x, y, score) in image pixels; a random model may place some outside the image.
    assert all(len(k) == 3 and all(np.isfinite(k)) for k in person["keypoints"].values())
    assert len({(x, y) for x, y, _ in person["keypoints"].values()}) > 1
    skeleton = h.pixels(run.image(found["wide"]["control_image"]))
    assert skeleton.shape == (32, 48, 3) and skeleton.any()
    assert [len(p) for p in found["both"]["control_image_meta"]["people"]] == [1, 1]
    assert found["both"]["control_image_meta"]["people"][0] == meta["people"]
    assert found["tall"]["control_image_meta"]["people"][0]["keypoints"] != person["keypoints"]

    # Keypoints under the threshold are recorded but not drawn.
    strict = pixmill_run(rows[:1], [("control-image", {**pose, "keypoint_threshold": 1.01})], "strict")
    assert not h.pixels(strict.image(strict.by_id["wide"]["control_image"])).any()
    assert strict.by_id["wide"]["control_image_meta"]["people"] == meta["people"]
    again = pixmill_run(rows[:1], [("control-image", pose)], "again")
    assert (h.pixels(again.image(again.by_id["wide"]["control_image"])) == skeleton).all()


def test_pose_with_a_person_detector(tmp_path: Path, estimators, h, pixmill_run):
    rows = _rows(tmp_path, h)[:1]
    pose = {"kind": "pose", "model": str(estimators["pose"]), "detector": str(estimators["person-detector"]),
            "keypoint_threshold": 0.0}
    run = pixmill_run(rows, [("control-image", {**pose, "detector_threshold": 0.0})])
    people = run.by_id["wide"]["control_image_meta"]["people"]
    # The tiny detector's boxes (it labels everything "person"): one pose per box, none the whole image.
    assert len(people) > 1 and all(p["box"] != [0.0, 0.0, 48.0, 32.0] for p in people)
    assert all(p["box_score"] is not None and 0 <= p["box_score"] <= 1 for p in people)
    assert all(0 <= v <= 48 for p in people for v in p["box"][::2]) and len({str(p["box"]) for p in people}) > 1
    assert run.by_id["wide"]["control_image_meta"]["detector"] == str(estimators["person-detector"])
    # No box above the threshold: nobody to draw, an empty skeleton image of the source size.
    none = pixmill_run(rows, [("control-image", {**pose, "detector_threshold": 0.99})], "none")
    assert none.by_id["wide"]["control_image_meta"]["people"] == []
    blank = h.pixels(none.image(none.by_id["wide"]["control_image"]))
    assert blank.shape == (32, 48, 3) and not blank.any()


def test_openpose_drawing_on_fixed_keypoints():
    from pixmill_diffusers.openpose_draw import coco_to_openpose, draw_openpose

    coco = {"nose": (100, 30), "left_eye": (115, 15), "right_eye": (85, 15), "left_ear": (135, 25),
            "right_ear": (65, 25), "left_shoulder": (140, 70), "right_shoulder": (60, 70), "left_elbow": (160, 110),
            "right_elbow": (40, 110), "left_wrist": (170, 150), "right_wrist": (30, 150), "left_hip": (125, 140),
            "right_hip": (75, 140), "left_knee": (125, 170), "right_knee": (75, 170), "left_ankle": (125, 195),
            "right_ankle": (75, 195)}
    scores = [0.9] * 17
    scores[9] = 0.1  # the left wrist is not seen
    joints = coco_to_openpose(list(coco.values()), scores, threshold=0.3)
    image = np.asarray(draw_openpose((200, 210), [joints]))
    assert image.shape == (210, 200, 3)

    def at(point):
        return tuple(int(v) for v in image[point[1], point[0]])

    # The OpenPose annotator's joint colours (RGB): the person's right side first, a neck between the shoulders.
    expected = {"nose": (255, 0, 0), "right_shoulder": (255, 170, 0), "right_elbow": (255, 255, 0),
                "right_wrist": (170, 255, 0), "left_shoulder": (85, 255, 0), "left_elbow": (0, 255, 0),
                "right_hip": (0, 255, 170), "right_knee": (0, 255, 255), "right_ankle": (0, 170, 255),
                "left_hip": (0, 85, 255), "left_knee": (0, 0, 255), "left_ankle": (85, 0, 255),
                "right_eye": (170, 0, 255), "left_eye": (255, 0, 255), "right_ear": (255, 0, 170),
                "left_ear": (255, 0, 85)}
    for name, color in expected.items():
        assert at(coco[name]) == color, name
    assert at((100, 70)) == (255, 85, 0)  # the neck
    # Limbs at 60% of their colour: neck -> right shoulder, neck -> left shoulder.
    assert at((82, 70)) == (153, 0, 0) and at((118, 70)) == (153, 51, 0)
    # The unseen left wrist: no joint, no forearm; the background stays black.
    assert at(coco["left_wrist"]) == (0, 0, 0) and at((165, 130)) == (0, 0, 0) and at((5, 205)) == (0, 0, 0)
    # One shoulder unseen: no neck.
    scores[5] = 0.0
    assert coco_to_openpose(list(coco.values()), scores, threshold=0.3)[1] is None


def test_models_of_the_wrong_kind_fail_before_any_row(tmp_path: Path, models, estimators, h, pixmill_run):
    rows = _rows(tmp_path, h)[:1]
    with pytest.raises(ConfigError, match="is a vitpose model, not a depth-estimation model.*fix: pass a depth"):
        pixmill_run(rows, [("control-image", {"kind": "depth", "model": str(estimators["pose"])})], "a")
    with pytest.raises(ConfigError, match="is a depth_anything model, not a ViTPose pose-estimation model"):
        pixmill_run(rows, [("control-image", {"kind": "pose", "model": str(estimators["depth"])})], "b")
    with pytest.raises(ConfigError, match="is a vitpose model, not a object-detection model"):
        pixmill_run(rows, [("control-image", {"kind": "pose", "model": str(estimators["pose"]),
                                                  "detector": str(estimators["pose"])})], "c")
    with pytest.raises(ConfigError, match="cannot load .* as a depth-estimation model"):
        pixmill_run(rows, [("control-image", {"kind": "depth", "model": str(models["sd"])})], "d")
    with pytest.raises(ConfigError, match="model folder .* does not exist"):
        pixmill_run(rows, [("control-image", {"kind": "depth", "model": str(tmp_path / "nowhere")})], "e")
    with pytest.raises(ConfigError, match="--kind pose needs a model.*make-tiny DIR --kind pose"):
        pixmill_run(rows, [("control-image", {"kind": "pose"})], "f")
    with pytest.raises(ConfigError, match="--detector is for --kind pose"):
        pixmill_run(rows, [("control-image", {"kind": "depth", "model": "x", "detector": "y"})], "g")


def test_cli_prints_one_line_for_a_wrong_model_and_make_tiny_builds_each_kind(tmp_path: Path, estimators, h):
    write_jsonl(tmp_path / "rows.jsonl", [{"image": h.pattern(tmp_path / "a.png", (16, 16), "noise")}])
    cli = [sys.executable, "-c", "from pixmill.cli import main; main()"]
    done = subprocess.run([*cli, "run", "-q", "-i", str(tmp_path / "rows.jsonl"), "-o", str(tmp_path / "run"),
                           "control-image", "--kind", "depth", "--model", str(estimators["pose"])],
                          capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "not a depth-estimation model" in errors[0] and "fix:" in errors[0]
    made = subprocess.run([*cli, "diffusers", "make-tiny", str(tmp_path / "pose"), "--kind", "pose"],
                          capture_output=True, text=True)
    assert made.returncode == 0 and "ViTPose" in made.stdout
    from transformers import VitPoseForPoseEstimation

    assert VitPoseForPoseEstimation.from_pretrained(str(tmp_path / "pose")).config.num_labels == 17


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_depth_and_pose_on_the_gpu_match_the_cpu(tmp_path: Path, estimators, h, pixmill_run):
    rows = _rows(tmp_path, h)[:2]
    maps = {}
    for device in ("cpu", "cuda"):
        depth = pixmill_run(rows, [("control-image", {"kind": "depth", "model": str(estimators["depth"]),
                                                          "device": device})], f"depth-{device}")
        pose = pixmill_run(rows, [("control-image", {"kind": "pose", "model": str(estimators["pose"]),
                                                         "device": device})], f"pose-{device}")
        maps[device] = (h.pixels(depth.image(depth.by_id["wide"]["control_image"])),
                        pose.by_id["wide"]["control_image_meta"]["people"][0]["keypoints"])
    (cpu_depth, cpu_points), (gpu_depth, gpu_points) = maps["cpu"], maps["cuda"]
    assert gpu_depth.shape == cpu_depth.shape and np.abs(gpu_depth - cpu_depth).max() <= 3
    # Keypoints are heatmap peaks: a random model has near-ties that GPU rounding may tip, so most, not all.
    same = sum(np.allclose(gpu_points[k][:2], cpu_points[k][:2], atol=1.0) for k in cpu_points)
    assert len(gpu_points) == 17 and same >= 12
