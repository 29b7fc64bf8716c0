"""``pixmill run``: a pipeline as a chain of operator subcommands, or as a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..options import Option
from ..pipeline import PipelineSpec, StepSpec, run_pipeline
from ..plugins import get_registry
from ..progress import make_progress
from .options import click_option, given


def operator_command(name: str) -> click.Command:
    """A click command for an operator: its own options, ``--serving`` and every option of the
    servings that have its capability (each serving validates what it receives)."""
    registry = get_registry()
    op_cls = registry.get_operator(name)
    params: list[click.Parameter] = [click_option(o) for o in op_cls.all_options()]
    if op_cls.capability:
        servings = {n: c for n, c in registry.classes("servings").items() if op_cls.capability in c.capabilities}
        params.append(click.Option(["--serving", "serving"], type=click.STRING, default=None,
                                   help=f"model backend for {op_cls.capability}: {', '.join(servings) or 'none installed'}"))
        seen = {o.name for o in op_cls.all_options()} | {"serving"}
        owners: dict[str, list[str]] = {}
        declared: dict[str, Option] = {}
        for sname, scls in servings.items():
            for opt in scls.options:
                owners.setdefault(opt.name, []).append(sname)
                declared.setdefault(opt.name, opt)
        for opt_name, opt in declared.items():
            if opt_name in seen:
                continue
            conflict = any(o.name == opt_name and (o.type is not opt.type or o.choices != opt.choices)
                           for s in servings.values() for o in s.options)
            params.append(click_option(opt, help_prefix=f"[{', '.join(owners[opt_name])}] ", loose_type=conflict))

    def callback(**kwargs: Any) -> StepSpec:
        return StepSpec(name, given(kwargs))

    doc = op_cls.description or (op_cls.__doc__ or "").strip().splitlines()[0]
    return click.Command(name, params=params, callback=callback, help=(op_cls.__doc__ or doc), short_help=doc)


class RunGroup(click.Group):
    """A chained group whose subcommands are the registered operators, and whose first argument may
    be a pipeline file."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return get_registry().names("operators")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in get_registry().names("operators"):
            return None
        return operator_command(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and name not in get_registry().names("operators") and not name.startswith("-"):
            # One line naming what exists (click's own message does not list the operators).
            get_registry().get_operator(name)
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        # After the group's own options, a first word ending in .yaml is the pipeline file.
        attr = "_protected_args" if hasattr(ctx, "_protected_args") else "protected_args"
        words = getattr(ctx, attr)
        if words and words[0].endswith((".yaml", ".yml")):
            ctx.meta["pipeline_file"] = words[0]
            setattr(ctx, attr, words[1:])
        return rest


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
@click.option("--allow-root", "allow_roots", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="also let rows name files under this folder (repeatable; default: only the run and input folders)")
@click.option("--dry-run", is_flag=True, help="validate and print the pipeline as YAML, run nothing")
@click.option("-q", "--quiet", is_flag=True, help="no progress output")
@click.pass_context
def command(ctx: click.Context, **kwargs: Any) -> None:
    """Run a pipeline: pixmill run --input IN --out DIR OP [OPTIONS] [OP [OPTIONS]]...

    \b
    Examples:
      pixmill run -i prompts.jsonl -o runs/demo template --template "a photo of {prompt}" head --n 10
      pixmill run pipeline.yaml --out runs/other
    Every step is cached: rerunning the same command does no work, and a killed run resumes.
    `pixmill run OPERATOR --help` lists an operator's options.
    """


@command.result_callback()
@click.pass_context
def _run(ctx: click.Context, steps: list[StepSpec], input_path: Path | None, out: Path | None, store: str | None,
         executor: str | None, executor_opt: tuple[str, ...], seed: int | None, retry_failed: bool | None,
         skip_bad_lines: bool | None, id_key: str | None, allow_roots: tuple[Path, ...], dry_run: bool,
         quiet: bool) -> None:
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
    overrides = {"input": input_path, "out": out, "store": store, "executor": executor, "seed": seed,
                 "retry_failed": retry_failed, "skip_bad_lines": skip_bad_lines, "id_key": id_key}
    for key, value in overrides.items():
        if value is not None:
            setattr(spec, key, value)
    spec.allow_roots = [*spec.allow_roots, *map(str, allow_roots)]
    for item in executor_opt:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--executor-opt {item!r} is not KEY=VALUE", "write e.g. --executor-opt workers=4")
        spec.executor_options[key.replace("-", "_")] = value
    if dry_run:
        from ..pipeline import build_operator

        registry = get_registry()
        ops = [build_operator(registry, s.operator, s.options) for s in spec.steps]
        click.echo(spec.to_yaml(ops), nl=False)
        return
    results = run_pipeline(spec, progress=make_progress(quiet=quiet))
    _print_summary(spec, results, quiet)


def _print_summary(spec: PipelineSpec, results: list, quiet: bool) -> None:
    if quiet:
        return
    click.echo("")
    click.echo(f"{'step':<24}{'rows':>10}{'done':>10}{'failed':>8}{'new':>8}  time")
    for r in results:
        time_txt = "cached" if r.cached else f"{r.seconds:.1f}s"
        click.echo(f"{r.folder:<24}{r.rows:>10,}{r.done:>10,}{r.failed:>8,}{r.new_done:>8,}  {time_txt}")
    failed = sum(r.failed for r in results)
    last = results[-1]
    click.echo(f"\nrun folder: {spec.out}   last step: {Path(spec.out) / last.folder} ({last.rows:,} rows)")
    if failed:
        click.echo(f"{failed:,} rows failed: see `pixmill status {spec.out}`; rerun with --retry-failed to retry them")
    if any(r.skipped_lines for r in results):
        click.echo(f"{results[0].skipped_lines:,} bad input lines skipped: see {Path(spec.out) / results[0].folder / 'skipped.jsonl'}")
