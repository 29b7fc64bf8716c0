"""The core's generic operators. Each module holds one family; OPERATORS lists them all."""

from __future__ import annotations

from .basic import BASIC_OPERATORS

OPERATORS = [*BASIC_OPERATORS]
