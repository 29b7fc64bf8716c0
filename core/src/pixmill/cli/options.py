"""Turn declared :class:`pixmill.Option` lists into click parameters."""

from __future__ import annotations

import click

from ..options import Option

_CLICK_TYPES = {str: click.STRING, int: click.INT, float: click.FLOAT, dict: click.STRING}


def click_option(opt: Option, help_prefix: str = "", flag: str | None = None, dest: str | None = None) -> click.Option:
    """A click option for a declared option (``flag`` and ``dest`` default to the option's own).
    Defaults stay ``None`` so that only what the user typed is passed on, and the owner's own
    default applies otherwise."""
    flag = flag or opt.flag
    dest = dest or opt.name
    help_text = f"{help_prefix}{f'with {opt.when}: ' if opt.when else ''}{opt.help}"
    if opt.default not in (None, "", [], {}) and not opt.secret:
        help_text += f"  [default: {opt.default}]"
    if opt.required:
        help_text += "  [required]"
    if opt.type is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", dest], default=None, help=help_text)
    if opt.type is list:
        return click.Option([flag, dest], multiple=True, default=None, help=help_text + "  (repeat or comma-separate)")
    kind: click.ParamType = _CLICK_TYPES[opt.type]
    if opt.choices:
        kind = click.Choice([str(c) for c in opt.choices])
    metavar = opt.name.upper() if opt.type is not dict else "JSON"
    return click.Option([flag, dest], type=kind, default=None, help=help_text, metavar=metavar)


def given(params: dict) -> dict:
    """The options the user actually passed (click gives None / () for the others)."""
    out = {}
    for key, value in params.items():
        if value is None or value == ():
            continue
        if isinstance(value, tuple):  # a repeated list option; each may also be a comma list
            value = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        out[key] = value
    return out
