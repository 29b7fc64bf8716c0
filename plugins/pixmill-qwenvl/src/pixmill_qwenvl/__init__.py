"""pixmill-qwenvl: the ``qwen-vl`` vision-language serving (Qwen2.5-VL) for ``judge`` and ``caption``.

Engines: ``transformers`` (in-process, CPU/GPU), ``vllm`` (in-process ``vllm.LLM``), ``openai``
(any OpenAI-compatible server such as ``vllm serve``). Heavy libraries are imported only when a
serving loads, so installing this plugin keeps ``pixmill --help`` fast.
"""

from __future__ import annotations

from pixmill.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_servings(register):
    from .serving import QwenVLServing

    register(QwenVLServing)


@hookimpl
def register_commands(cli):
    from .cli import qwenvl

    cli.add_command(qwenvl)
