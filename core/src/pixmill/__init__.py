"""pixmill: synthesize image datasets with pluggable model backends.

Public API (DataFlow-MM shaped)::

    from pixmill import Storage, get_operator, get_serving
    storage = Storage(input="prompts.jsonl", out="runs/demo")
    Template = get_operator("template")
    Template(template="a photo of {prompt}", output_key="prompt").run(storage.step())
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .context import StepContext
from .errors import ConfigError, InputError, PixmillError, PluginError, RowError
from .executor import Executor, StepTask, run_batch
from .hookspecs import hookimpl
from .operator import Dropped, Failed, Operator
from .options import Option
from .serving import (
    ChatRequest,
    ChatResponse,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    Serving,
)
from .store import Store

__all__ = [
    "ChatRequest", "ChatResponse", "ConfigError", "Dropped", "EditRequest", "Executor", "Failed", "GeneratedImage",
    "ImageRequest", "InputError", "Operator", "Option", "PixmillError", "PluginError", "RowError",
    "Run", "Serving", "StepContext", "StepTask", "Store", "Storage", "FileStorage", "get_operator", "get_serving",
    "hookimpl", "run_batch", "__version__",
]


def get_operator(name: str) -> type[Operator]:
    """The operator class registered under ``name`` (by any installed plugin)."""
    from .plugins import get_registry

    return get_registry().get_operator(name)


def get_serving(name: str, **options: Any) -> Serving:
    """A configured (not yet loaded) instance of the serving registered under ``name``."""
    from .plugins import get_registry

    return get_registry().get_serving(name)(**options)


def __getattr__(name: str) -> Any:
    # The storage API pulls in the runner; import it on first use only.
    if name in ("Storage", "FileStorage"):
        from . import api

        return getattr(api, name)
    if name == "Run":
        from .run import Run

        return Run
    raise AttributeError(name)
