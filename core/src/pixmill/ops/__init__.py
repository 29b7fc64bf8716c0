"""The core's generic operators. Each module holds one family; OPERATORS lists them all."""

from __future__ import annotations

from .basic import BASIC_OPERATORS
from .image_stats import IMAGE_STATS_OPERATORS
from .images import IMAGE_OPERATORS
from .judge import JUDGE_OPERATORS
from .prompts import PROMPT_OPERATORS
from .upscale import UPSCALE_OPERATORS

OPERATORS = [*BASIC_OPERATORS, *IMAGE_OPERATORS, *JUDGE_OPERATORS, *PROMPT_OPERATORS, *UPSCALE_OPERATORS,
             *IMAGE_STATS_OPERATORS]
