"""``pixmill keys``: store API keys outside every run folder, with user-only permissions."""

from __future__ import annotations

import sys

import click

from .. import keys as keystore


@click.group("keys")
def command() -> None:
    """Manage stored API keys (used when no --api-key is given, before the environment variable).

    Keys live in $PIXMILL_HOME/keys.json or ~/.config/pixmill/keys.json (mode 0600).
    """


@command.command("set")
@click.argument("name")
@click.option("--value", default=None, help="the key itself (visible in shell history and `ps`: prefer the prompt or stdin)")
def set_cmd(name: str, value: str | None) -> None:
    """Store the key NAME (e.g. openai, openrouter, gemini), read from a hidden prompt or stdin."""
    if value is not None:
        click.echo("Warning: a key given with --value shows in shell history and process lists; "
                   "prefer `pixmill keys set NAME` and paste it at the prompt.", err=True)
    elif sys.stdin.isatty():
        value = click.prompt(f"Key for {name}", hide_input=True, err=True)
    else:
        value = sys.stdin.readline().strip()
    path = keystore.set_key(name, value or "")
    click.echo(f"Stored key {name!r} in {path}", err=True)


@command.command("list")
def list_cmd() -> None:
    """List stored key names (never their values)."""
    for name in keystore.key_names():
        click.echo(name)


@command.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Forget the stored key NAME."""
    if not keystore.remove_key(name):
        raise click.ClickException(f"no stored key named {name!r} (see `pixmill keys list`)")
    click.echo(f"Removed key {name!r}", err=True)


@command.command("path")
def path_cmd() -> None:
    """Print where keys are stored."""
    click.echo(str(keystore.keys_path()))
