"""The LAION aesthetic predictor head: a small MLP (or a single linear layer) over L2-normalised
CLIP image embeddings, loaded from its weights file.

The improved predictor (``sac+logos+ava1-l14-linearMSE.pth``, for CLIP ViT-L/14) is five linear
layers with dropout between them and no activations, keys ``layers.0``, ``layers.2``, ``layers.4``,
``layers.6``, ``layers.7``; the first version (``sa_0_4_vit_l_14_linear.pth``) is one linear layer,
keys ``weight`` and ``bias``. Both load here: the linear layers are applied in key order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pixmill.errors import ConfigError


def _order(key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", key))


class AestheticHead:
    """Linear layers applied in order; :meth:`score` maps (n, dim) embeddings to n scores."""

    def __init__(self, layers: list[tuple[Any, Any]], source: str):
        self.layers = layers
        self.source = source
        self.input_dim = int(layers[0][0].shape[1])

    @classmethod
    def load(cls, path: str | Path) -> AestheticHead:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"aesthetic-score: head weights {path} not found",
                              "download sac+logos+ava1-l14-linearMSE.pth (see docs/curation.md) and pass --head PATH")
        try:
            if path.suffix == ".safetensors":
                from safetensors.numpy import load_file

                state = load_file(str(path))
            else:
                import torch

                state = {k: v.float().numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise ConfigError(f"aesthetic-score: cannot read head weights {path} ({exc})",
                              "pass a .pth state dict or .safetensors file of the LAION aesthetic predictor") from None
        weights = sorted((k for k, v in state.items() if k.endswith("weight") and v.ndim == 2), key=_order)
        if not weights:
            raise ConfigError(f"aesthetic-score: {path} holds no linear layer weights",
                              "pass the LAION aesthetic predictor's state dict")
        layers = []
        for key in weights:
            bias = state.get(key[: -len("weight")] + "bias")
            layers.append((state[key], bias))
        for (w1, _), (w2, _) in zip(layers, layers[1:], strict=False):
            if w1.shape[0] != w2.shape[1]:
                raise ConfigError(f"aesthetic-score: {path}: layer shapes do not chain ({w1.shape} then {w2.shape})",
                                  "pass the predictor's own state dict, unmodified")
        if layers[-1][0].shape[0] != 1:
            raise ConfigError(f"aesthetic-score: {path} outputs {layers[-1][0].shape[0]} values, not one score",
                              "pass the LAION aesthetic predictor's state dict")
        return cls(layers, str(path))

    def score(self, embeddings: Any) -> Any:
        import numpy as np

        x = np.asarray(embeddings, dtype=np.float64)
        if x.shape[1] != self.input_dim:
            raise ConfigError(f"aesthetic-score: the head {self.source} takes {self.input_dim}-d embeddings, the "
                              f"serving gives {x.shape[1]}-d",
                              "use the CLIP model the head was trained on (openai/clip-vit-large-patch14: 768-d)")
        for weight, bias in self.layers:
            x = x @ weight.T.astype(np.float64) + (0 if bias is None else bias.astype(np.float64))
        return x[:, 0]
