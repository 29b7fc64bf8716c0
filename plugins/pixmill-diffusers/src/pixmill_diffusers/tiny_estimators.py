"""Tiny random-weight estimators for ``control-image``, built offline: a depth model, a pose model
and a person detector, each saved with its image processor so ``--model DIR`` loads it exactly as
it loads a real checkpoint.

- ``depth``: Depth Anything (DINOv2 backbone + DPT head), ``AutoModelForDepthEstimation``
- ``pose``: ViTPose (``VitPoseForPoseEstimation``), 17 COCO keypoints
- ``person-detector``: RT-DETR (``AutoModelForObjectDetection``) whose labels are ``person`` and ``cat``

Their outputs are noise that follows the input: enough to test loading, batching, drawing and the
chain to a ControlNet, not to estimate anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ESTIMATOR_KINDS = ("depth", "pose", "person-detector")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _depth() -> tuple[Any, Any]:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=32, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8, head_hidden_size=8)
    # The processor of the real Depth Anything checkpoints, at 28 pixels instead of 518.
    processor = DPTImageProcessorPil(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                     resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    return DepthAnythingForDepthEstimation(config), processor


def _pose() -> tuple[Any, Any]:
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessorPil

    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32, out_indices=[2])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17))
    return model, VitPoseImageProcessorPil(size={"height": 64, "width": 48})


def _person_detector() -> tuple[Any, Any]:
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessorPil, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[8, 16, 16], d_model=16,
                          num_queries=10, decoder_layers=1, encoder_layers=1, decoder_attention_heads=2,
                          encoder_attention_heads=2, decoder_ffn_dim=16, encoder_ffn_dim=16, decoder_n_points=2,
                          num_labels=2, id2label={0: "person", 1: "cat"}, label2id={"person": 0, "cat": 1},
                          num_denoising=0, anchor_image_size=None, decoder_in_channels=[16, 16, 16])
    return RTDetrForObjectDetection(config), RTDetrImageProcessorPil(size={"height": 64, "width": 64})


def make_tiny_estimator(folder: str | Path, kind: str = "depth", seed: int = 0) -> Path:
    """Build a tiny random-weight estimator of ``kind`` (see :data:`ESTIMATOR_KINDS`) and save it,
    with its image processor, to ``folder`` (created)."""
    import torch

    from .base import quiet_progress_bars

    builders = {"depth": _depth, "pose": _pose, "person-detector": _person_detector}
    if kind not in builders:
        raise ValueError(f"unknown tiny estimator kind {kind!r}: choose one of {', '.join(ESTIMATOR_KINDS)}")
    quiet_progress_bars()
    torch.manual_seed(seed)  # the same seed builds the same weights, so test maps are stable
    model, processor = builders[kind]()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    (folder / "README.md").write_text(
        f"Tiny random-weight `{kind}` model made by `pixmill diffusers make-tiny` (seed {seed}).\n"
        "Its predictions are noise: use it to smoke-test a setup, not to estimate anything.\n", encoding="utf-8")
    return folder
