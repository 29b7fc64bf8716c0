"""OpenPose-style skeleton images, the control images openpose ControlNets were trained on.

Pose models such as ViTPose predict the 17 COCO keypoints; the openpose ControlNets
(``lllyasviel/control_v11p_sd15_openpose``, ``thibaud/controlnet-openpose-sdxl-1.0``...) were
trained on skeletons drawn by the OpenPose annotator in its own 18-point layout (a neck joint, the
right side listed first), with one fixed colour per joint and per limb on a black canvas. This
module maps COCO-17 to that layout and draws it the way the annotator (and ``controlnet_aux``)
does: limbs as filled ellipses at 60% of their colour, joints as filled circles on top.
"""

from __future__ import annotations

from typing import Any, Sequence

# COCO-17 keypoint names, in the order pose models output them.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# OpenPose-18 joints, each as the COCO index it comes from; the neck (1) is the shoulders' midpoint.
NECK = 1
OPENPOSE_FROM_COCO = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)

# The annotator's limbs (pairs of OpenPose joints) and colours (RGB), one colour per limb and per joint.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_SHADE = 0.6
STICK_WIDTH = 4
JOINT_RADIUS = 4



def coco_to_openpose(keypoints: Sequence[Sequence[float]], scores: Sequence[float],
                     threshold: float) -> list[tuple[float, float] | None]:
    """The 18 OpenPose joints (pixel ``(x, y)``, or ``None`` when not seen) of one person's COCO-17
    keypoints. A keypoint scoring below ``threshold`` is not seen; the neck is seen when both
    shoulders are."""
    seen = [(float(k[0]), float(k[1])) if s >= threshold else None for k, s in zip(keypoints, scores, strict=False)]
    joints: list[tuple[float, float] | None] = []
    for index, coco in enumerate(OPENPOSE_FROM_COCO):
        if index == NECK:
            left, right = seen[5], seen[6]
            joints.append(((left[0] + right[0]) / 2, (left[1] + right[1]) / 2) if left and right else None)
        else:
            joints.append(seen[coco])
    return joints


def draw_openpose(size: tuple[int, int], people: Sequence[Sequence[tuple[float, float] | None]]) -> Any:
    """An RGB PIL image of ``size`` (width, height): every person's OpenPose-18 skeleton on black."""
    import math

    import cv2
    import numpy as np
    from PIL import Image

    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for joints in people:
        for (a, b), color in zip(LIMBS, COLORS[:len(LIMBS)], strict=True):
            if joints[a] is None or joints[b] is None:
                continue
            (xa, ya), (xb, yb) = joints[a], joints[b]
            length = math.hypot(xa - xb, ya - yb)
            angle = math.degrees(math.atan2(ya - yb, xa - xb))
            polygon = cv2.ellipse2Poly((int((xa + xb) / 2), int((ya + yb) / 2)), (int(length / 2), STICK_WIDTH),
                                       int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, [int(c * LIMB_SHADE) for c in color])
    # Joints after every limb, so a joint is never hidden under another person's limb.
    for joints in people:
        for point, color in zip(joints, COLORS, strict=False):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), JOINT_RADIUS, color, thickness=-1)
    return Image.fromarray(canvas)
