"""``pixmill run``: a pipeline as a chain of operator subcommands, or as a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from ..plugins import get_registry
from .options import click_option, given

if TYPE_CHECKING:  # the pipeline and runner load when a pipeline runs, not for `pixmill --help`
    from ..pipeline import PipelineSpec, StepSpec

EXIT_ROWS_FAILED = 3  # the run finished, but some rows failed (see docs/user-guide.md, "Exit codes")


SERVING_PREFIX = "serving_"  # click parameter names of serving options (flags stay readable)


def operator_command(name: str, serving: str | None = None) -> click.Command:
    """A click command for an operator: its own options, ``--serving``, and, once ``--serving NAME``
    is on the command line, that serving's options (with its own help and defaults).

    Each option keeps its owner: a serving option whose name the operator also uses gets the flag
    ``--serving-NAME`` (``--serving-max-tokens``), every other serving option its plain flag.
    """
    registry = get_registry()
    op_cls = registry.get_operator(name)
    op_options = op_cls.all_options()
    params: list[click.Parameter] = [click_option(o) for o in op_options]
    epilog = None
    serving_cls = None
    if op_cls.capability:
        matching = [n for n, c in registry.classes("servings").items() if op_cls.capability in c.capabilities]
        params.append(click.Option(["--serving", "serving"], type=click.STRING, default=None, metavar="NAME",
                                   help=f"model backend for {op_cls.capability}: {', '.join(matching) or 'none installed'}"))
        if serving is None:
            epilog = (f"Each serving has its own options: `pixmill run {name} --serving NAME --help` lists them "
                      f"(NAME: {', '.join(matching) or 'none installed'}).")
        else:
            serving_cls = registry.get_serving(serving)
            if op_cls.capability not in serving_cls.capabilities:
                raise ConfigError(f"serving {serving} cannot do {op_cls.capability} (needed by {name})",
                                  f"use one of: {', '.join(matching) or 'none installed'}")
            taken = {o.name for o in op_options} | {"serving"}
            for opt in serving_cls.options:
                flag = f"--serving-{opt.flag[2:]}" if opt.name in taken else opt.flag
                params.append(click_option(opt, help_prefix=f"[{serving}] ", flag=flag,
                                           dest=SERVING_PREFIX + opt.name))

    def callback(**kwargs: Any) -> StepSpec:
        from ..pipeline import StepSpec

        options = given({k: v for k, v in kwargs.items() if not k.startswith(SERVING_PREFIX) and k != "serving"})
        serving_name = kwargs.get("serving")
        if serving_name:
            serving_opts = given({k[len(SERVING_PREFIX):]: v for k, v in kwargs.items() if k.startswith(SERVING_PREFIX)})
            options["serving"] = {"name": serving_name, **serving_opts}
        return StepSpec(name, options)

    doc = op_cls.description or (op_cls.__doc__ or name).strip().splitlines()[0]
    return click.Command(name, params=params, callback=callback, help=(op_cls.__doc__ or doc), short_help=doc,
                         epilog=epilog)


# Options of `pixmill run` that take a value (so the word after them is not a pipeline file).
_VALUE_OPTIONS = {"-i", "--input", "-o", "--out", "--store", "--executor", "--executor-opt", "--seed", "--id-key",
                  "--set"}


def _serving_in(args: list[str], operators: set[str]) -> str | None:
    """The ``--serving NAME`` of the operator whose arguments start ``args`` (up to the next operator)."""
    prev = ""
    for i, word in enumerate(args):
        if word in operators and not prev.startswith("-"):
            return None
        if word == "--serving" and i + 1 < len(args):
            return args[i + 1]
        if word.startswith("--serving="):
            return word.split("=", 1)[1]
        prev = word
    return None


class RunGroup(click.Group):
    """A chained group whose subcommands are the registered operators; a pipeline file may stand
    anywhere among the run options."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return get_registry().names("operators")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in get_registry().names("operators"):
            return None
        return operator_command(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        operators = set(get_registry().names("operators"))
        if name in operators:
            return name, operator_command(name, _serving_in(args[1:], operators)), args[1:]
        if name and not name.startswith("-"):
            # One line naming what exists (click's own message does not list the operators).
            get_registry().get_operator(name)
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The first word ending in .yaml that is not an option's value is the pipeline file; run
        # options may come before or after it (`pixmill run pipeline.yaml --out runs/other`).
        args = list(args)
        for i, word in enumerate(args):
            if word in get_registry().names("operators"):
                break
            if word.endswith((".yaml", ".yml")) and not word.startswith("-") and (i == 0 or args[i - 1] not in _VALUE_OPTIONS):
                ctx.meta["pipeline_file"] = args.pop(i)
                break
        return super().parse_args(ctx, args)


@click.group("run", cls=RunGroup, chain=True, invoke_without_command=True,
             subcommand_metavar="[PIPELINE.yaml] OPERATOR [OPTIONS] [OPERATOR [OPTIONS]]...")
@click.option("-i", "--input", "input_path", type=click.Path(path_type=Path), help="input rows (.jsonl, or .parquet with pixmill-parquet); none = start from one empty row")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="run folder (one sub-folder per step)")
@click.option("--store", default=None, help="format of the step files: jsonl (default) or parquet")
@click.option("--executor", default=None, help="where batches run (default: local)")
@click.option("--executor-opt", multiple=True, metavar="KEY=VALUE", help="executor option, e.g. workers=4")
@click.option("--seed", type=int, default=None, help="run seed: every image's seed derives from it, the row id and the image index")
@click.option("--retry-failed", is_flag=True, default=None, help="retry the rows that failed in earlier runs")
@click.option("--skip-bad-lines", is_flag=True, default=None, help="skip malformed input lines (recorded in 00-input/skipped.jsonl)")
@click.option("--id-key", default=None, help="input field holding a unique row id (default: id, else the line number)")
@click.option("--set", "overrides", multiple=True, metavar="STEP.KEY=VALUE",
              help="override a step's option, e.g. --set judge.max_tokens=200 or --set 2.serving.base_url=URL "
                   "(STEP: the operator's name or its 1-based position)")
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="also let rows name files under this folder (repeatable; default: only the run and input folders)")
@click.option("--dry-run", is_flag=True, help="validate and print the resolved pipeline as YAML, run nothing")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@click.pass_context
def command(ctx: click.Context, **kwargs: Any) -> None:
    """Run a pipeline: pixmill run --input IN --out DIR OP [OPTIONS] [OP [OPTIONS]]...

    \b
    Examples:
      pixmill run -i prompts.jsonl -o runs/demo template --template "a photo of {prompt}" head --n 10
      pixmill run pipeline.yaml --out runs/other --set judge.serving.base_url=http://127.0.0.1:8000/v1
    Every step is cached: rerunning the same command does no work, and a killed run resumes.
    `pixmill run OPERATOR --help` lists an operator's options; `pixmill run OPERATOR --serving NAME --help`
    adds that serving's options. Exit codes: 0 every row done, 3 some rows failed, 1 the run could not
    start or stopped on an error, 2 a usage error, 130 interrupted.
    """


@command.result_callback()
@click.pass_context
def _run(ctx: click.Context, steps: list[StepSpec], input_path: Path | None, out: Path | None, store: str | None,
         executor: str | None, executor_opt: tuple[str, ...], seed: int | None, retry_failed: bool | None,
         skip_bad_lines: bool | None, id_key: str | None, overrides: tuple[str, ...],
         allow_roots: tuple[Path, ...], dry_run: bool,
         quiet: bool) -> None:
    from ..pipeline import PipelineSpec, build_operators, run_pipeline
    from ..progress import make_progress

    pipeline_file = ctx.meta.get("pipeline_file")
    if pipeline_file:
        if steps:
            raise ConfigError("give either a pipeline file or operators on the command line, not both",
                              f"put the steps in {pipeline_file}, or drop the file name")
        spec = PipelineSpec.from_yaml(Path(pipeline_file))
    elif steps:
        spec = PipelineSpec(steps=list(steps))
    else:
        click.echo(ctx.get_help())
        return
    run_options = {"input": input_path, "out": out, "store": store, "executor": executor, "seed": seed,
                   "retry_failed": retry_failed, "skip_bad_lines": skip_bad_lines, "id_key": id_key}
    for key, value in run_options.items():
        if value is not None:
            setattr(spec, key, value)
    spec.allow_roots = [*spec.allow_roots, *map(str, allow_roots)]
    for item in executor_opt:
        key, value = _key_value(item, "--executor-opt", "workers=4")
        spec.executor_options[key.replace("-", "_")] = value
    for item in overrides:
        target, value = _key_value(item, "--set", "judge.max_tokens=200")
        spec.override(target, value)
    if dry_run:
        operators = build_operators(get_registry(), spec)
        click.echo(spec.to_yaml(operators, out_as_given=True), nl=False)
        return
    results = run_pipeline(spec, progress=make_progress(quiet=quiet))
    _print_summary(spec, results, quiet)
    if any(r.failed for r in results):
        ctx.exit(EXIT_ROWS_FAILED)


def _key_value(item: str, option: str, example: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{option} {item!r} is not KEY=VALUE", f"write e.g. {option} {example}")
    return key, value


def _print_summary(spec: PipelineSpec, results: list, quiet: bool) -> None:
    failed = sum(r.failed for r in results)
    if failed:  # even with -q: a run that lost rows must say so
        click.echo(f"{failed:,} rows failed: see `pixmill status {spec.out}`; rerun with --retry-failed to retry them",
                   err=True)
    if quiet:
        return
    click.echo("")
    click.echo(f"{'step':<24}{'rows':>10}{'done':>10}{'failed':>8}{'new':>8}  time")
    for r in results:
        time_txt = "cached" if r.cached else f"{r.seconds:.1f}s"
        click.echo(f"{r.folder:<24}{r.rows:>10,}{r.done:>10,}{r.failed:>8,}{r.new_done:>8,}  {time_txt}")
    last = results[-1]
    click.echo(f"\nrun folder: {spec.out}   last step: {Path(spec.out) / last.folder} ({last.rows:,} rows)")
    if any(r.skipped_lines for r in results):
        click.echo(f"{results[0].skipped_lines:,} bad input lines skipped: see {Path(spec.out) / results[0].folder / 'skipped.jsonl'}")
