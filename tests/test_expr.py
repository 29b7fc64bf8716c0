"""The filter expression language: what it accepts, and that it never evaluates arbitrary code."""

from __future__ import annotations

import pytest
from pixmill.errors import ConfigError
from pixmill.expr import compile_expr

ROW = {"scores": {"overall": 7.5, "alignment": 9}, "width": 1024, "prompt": "A Red Fox", "images": ["a.png", "b.png"],
       "tags": ["animal", "outdoor"], "nsfw": False, "caption": None}


@pytest.mark.parametrize("expr,expected", [
    ("scores.overall >= 7 and width >= 512", True),
    ("scores.overall >= 8 or width < 512", False),
    ("scores['alignment'] == 9", True),
    ("images.1 == 'b.png'", True),
    ("len(images) == 2 and 'animal' in tags", True),
    ("'indoor' not in tags", True),
    ("lower(prompt) == 'a red fox'", True),
    ("contains(prompt, 'Fox') and startswith(prompt, 'A')", True),
    ("not nsfw", True),
    ("nsfw == false", True),
    ("caption is None", True),
    ("exists(caption)", False),
    ("512 <= width <= 2048", True),
    ("width / 2 > 500", True),
    ("missing.field > 3", False),          # a missing field is None; None > 3 does not match
    ("missing.field == null", True),
    ("-scores.overall < 0", True),
])
def test_expressions(expr, expected):
    assert bool(compile_expr(expr)(ROW)) is expected


@pytest.mark.parametrize("expr", [
    "__import__('os').system('echo hacked')",
    "open('/etc/passwd')",
    "scores.__class__",
    "(lambda: 1)()",
    "[x for x in tags]",
    "prompt.upper()",
])
def test_code_is_never_evaluated(expr, capfd):
    with pytest.raises(ConfigError, match="is not allowed|does not parse"):
        compile_expr(expr)(ROW)
    assert "hacked" not in capfd.readouterr().out


def test_syntax_error_is_one_clear_line():
    with pytest.raises(ConfigError) as err:
        compile_expr("scores.overall >= ")
    message = str(err.value)
    assert "does not parse" in message and "\n" not in message and "fix:" in message


def test_a_computed_value_against_a_constant_matches_the_general_comparison():
    # `len(prompt) < 200` compiles to one closure; `len(prompt) < len(x)` takes the general path.
    fast, general = compile_expr("len(prompt) < 3"), compile_expr("len(prompt) < len(three)")
    for row in ({"prompt": "ab"}, {"prompt": "abcd"}, {}, {"prompt": ["a", "b", "c"]}):
        assert fast(row) == general({**row, "three": "xyz"}), row
    assert compile_expr("lower(width) < 3")({"width": 5}) is False  # '5' < 3: not comparable, no match
    with pytest.raises(TypeError):  # the value's own error is the row's, as before
        fast({"prompt": 5})
