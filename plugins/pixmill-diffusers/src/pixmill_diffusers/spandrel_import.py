"""Importing spandrel (the loader of GAN upscaler files) on machines without torchvision.

spandrel imports ``torchvision.transforms.functional`` at module level for two architectures
(LaMa inpainting, RestoreFormer face restoration) that pixmill never serves; none of the
super-resolution architectures use it. torchvision must not be installed beside a CPU torch (its
wheels are CUDA builds, and its presence breaks diffusers' FLUX imports there), so when it is
missing, spandrel is imported against a stand-in module that lives in ``sys.modules`` only for the
duration of the import; calling one of its functions (only those two architectures would) raises.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

from pixmill.errors import ConfigError

INSTALL_HINT = ("pip install --no-deps spandrel==0.4.2 einops (spandrel declares torchvision, which the GAN "
                "upscalers do not use; with a CUDA torch, plain `pip install spandrel` works too)")
NEEDS_TORCHVISION = frozenset({"LaMa", "RestoreFormer"})


def _missing_torchvision(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("this model architecture needs torchvision, which is not installed")


def _stand_in() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")  # type: ignore[attr-defined]
    functional.rotate = _missing_torchvision  # type: ignore[attr-defined]
    functional.normalize = _missing_torchvision  # type: ignore[attr-defined]
    root.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


def import_spandrel() -> Any:
    """The spandrel module, or a ConfigError that says how to install it."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise ConfigError("the esrgan serving needs the spandrel package, which is not installed", INSTALL_HINT)
    if importlib.util.find_spec("torchvision") is not None:
        import spandrel

        return spandrel
    stand_in = _stand_in()
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        # Nobody else may mistake the stand-in for torchvision (diffusers and transformers probe it).
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return spandrel
