"""The ``pixmill`` command line. Each core command lives in its own module of this package and
exposes ``command`` (a click command or group); plugins add theirs through ``register_commands``."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from .. import __version__
from ..errors import PixmillError, environment_fault, is_environment_error
from ..interrupt import MESSAGE as INTERRUPTED

# Core command modules, each defining `command` (or a list `commands`). Add a module here to add a core command.
_COMMAND_MODULES = ("run", "info", "status", "export", "gallery", "init", "keys", "gc")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixmill")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False),
              help="load each *.py file in this folder as a plugin (also PIXMILL_PLUGINS_DIR)")
def cli(verbose: int, plugins_dirs: tuple[str, ...]) -> None:
    """pixmill: turn prompts into image datasets.

    A pipeline is a chain of operators run over rows (JSONL or Parquet); every step is cached,
    resumable and inspectable in its run folder. Start with `pixmill init DIR`.
    """
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def build_cli() -> click.Group:
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for cmd in getattr(module, "commands", None) or [module.command]:
            cli.add_command(cmd, cmd.name)
    from ..plugins import get_registry

    get_registry().commands(cli)
    return cli


def _plugins_dirs_first(argv: list[str]) -> None:
    """``--plugins-dir`` must act before the registry loads (the commands come from plugins)."""
    dirs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--plugins-dir"]
    dirs += [a.split("=", 1)[1] for a in argv if a.startswith("--plugins-dir=")]
    if dirs:
        os.environ["PIXMILL_PLUGINS_DIR"] = os.pathsep.join([*dirs, os.environ.get("PIXMILL_PLUGINS_DIR", "")]).strip(os.pathsep)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors, tracebacks only with PIXMILL_DEBUG=1."""
    debug = os.environ.get("PIXMILL_DEBUG", "") not in ("", "0")
    _plugins_dirs_first(sys.argv[1:] if argv is None else argv)
    try:
        group = build_cli()
        code = group.main(args=argv, prog_name="pixmill", standalone_mode=False)
        if isinstance(code, int):  # click returns ctx.exit()'s code instead of exiting
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # With standalone_mode=False click turns Ctrl-C into Abort; say what a user needs to know.
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo(INTERRUPTED if interrupted else "Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except PixmillError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        if is_environment_error(exc):  # disk full or unwritable while committing: say so plainly
            click.echo(f"Error: {environment_fault(exc, 'the run')}", err=True)
            sys.exit(1)
        click.echo(f"Error: {type(exc).__name__}: {exc} (set PIXMILL_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
