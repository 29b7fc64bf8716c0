"""Pipelines as data: the spec that the CLI chain, a YAML file and the Python API all build,
and the one function that runs it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .executor import Executor
from .operator import Operator
from .plugins import Registry, get_registry
from .progress import Progress
from .rows import ID_KEY
from .runner import Runner, StepResult, write_summary
from .serving import check_servings
from .store import Store

RUN_KEYS = ("input", "out", "store", "executor", "executor_options", "seed", "retry_failed",
            "skip_bad_lines", "id_key", "allow_roots")


@dataclass
class StepSpec:
    """One step: an operator name and its options (operator and serving options, plus ``serving``)."""

    operator: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineSpec:
    """A whole pipeline: where rows come from, where the run goes, and the steps."""

    steps: list[StepSpec]
    out: Path | None = None
    input: Path | None = None
    store: str = "jsonl"
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    retry_failed: bool = False
    skip_bad_lines: bool = False
    id_key: str = ID_KEY
    allow_roots: list[str] = field(default_factory=list)  # see pixmill.file_roots

    @classmethod
    def from_yaml(cls, path: Path) -> PipelineSpec:
        """Load a pipeline file. ``input`` and ``out`` are relative to the file's folder."""
        import yaml  # here, not at import: `pixmill --help` reads no YAML

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"pipeline file {path} does not exist", "check the path") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline file {path} is not valid YAML: {str(exc).splitlines()[0]}",
                              "fix the YAML syntax") from None
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise ConfigError(f"pipeline file {path} has no `steps:` list", "see docs/user-guide.md for the format")
        unknown = set(data) - set(RUN_KEYS) - {"steps"}
        if unknown:
            raise ConfigError(f"pipeline file {path}: unknown key {sorted(unknown)[0]!r}",
                              f"top-level keys are: steps, {', '.join(RUN_KEYS)}")
        steps = [_parse_step(item, path, i) for i, item in enumerate(data["steps"], 1)]
        base = path.resolve().parent
        spec = cls(steps=steps, **{k: data[k] for k in RUN_KEYS if k in data and k not in ("input", "out", "executor")})
        executor = data.get("executor")
        if isinstance(executor, dict):  # `executor: {name: local, workers: 4}`: options under their owner
            executor = dict(executor)
            spec.executor = str(executor.pop("name", "local"))
            spec.executor_options = {**executor, **spec.executor_options}
        elif executor is not None:
            spec.executor = str(executor)
        if data.get("input"):
            spec.input = base / data["input"]
        if data.get("out"):
            spec.out = base / data["out"]
        if not isinstance(spec.allow_roots, list):
            raise ConfigError(f"pipeline file {path}: allow_roots must be a list of folders",
                              "write `allow_roots: [/data/images]`")
        spec.allow_roots = [str(base / Path(r).expanduser()) for r in spec.allow_roots]
        return spec

    def override(self, target: str, value: Any) -> None:
        """Set one option of one step from the command line: ``STEP.KEY`` or ``STEP.serving.KEY``
        (``STEP.serving`` alone names the serving); STEP is the operator's name or its 1-based
        position. A key goes to its owner: the operator if it declares it, else the serving."""
        ref, _, key = target.partition(".")
        if not key:
            raise ConfigError(f"--set {target}=...: no option named", "write STEP.KEY=VALUE, e.g. judge.max_tokens=200")
        step = self._step(ref, target)
        key = key.replace("-", "_")
        registry = get_registry()
        op_names = {o.name for o in registry.get_operator(step.operator).all_options()}
        serving = step.options.get("serving")
        if key == "serving" or key.startswith("serving."):
            sub = key.partition(".")[2] or "name"
        elif key in op_names:
            step.options[key] = value
            return
        elif serving is not None:
            sub = key
        else:
            raise ConfigError(f"--set {target}: step {step.operator} has no option {key!r}",
                              f"its options are: {', '.join(sorted(op_names))}")
        nested = {"name": serving} if isinstance(serving, str) else dict(serving or {})
        nested[sub] = value
        step.options["serving"] = nested

    def _step(self, ref: str, target: str) -> StepSpec:
        if ref.isdigit():
            if not 1 <= int(ref) <= len(self.steps):
                raise ConfigError(f"--set {target}: there is no step {ref}", f"steps are numbered 1 to {len(self.steps)}")
            return self.steps[int(ref) - 1]
        named = [s for s in self.steps if s.operator == ref]
        if len(named) != 1:
            names = ", ".join(f"{i}={s.operator}" for i, s in enumerate(self.steps, 1))
            why = "no step runs" if not named else "several steps run"
            raise ConfigError(f"--set {target}: {why} operator {ref!r}", f"name the step by position ({names})")
        return named[0]

    def to_yaml(self, operators: list[Operator] | None = None, relative_to: Path | None = None,
                out_as_given: bool = False, executor: Executor | None = None) -> str:
        """The pipeline as YAML. With ``operators``, their resolved options (secrets removed), each
        under its owner; with ``executor``, its secret options (a Ray ``runtime_env``) left out.
        Paths are written relative to ``relative_to``; ``out`` is ``.`` (the file lives in the run
        folder) unless ``out_as_given``; without ``relative_to``, as given."""
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            if relative_to is None:
                return str(p)
            try:
                return os.path.relpath(Path(p).resolve(), Path(relative_to).resolve())
            except ValueError:  # another drive (Windows)
                return str(Path(p).resolve())

        steps: list[dict[str, Any]] = []
        for i, step in enumerate(self.steps):
            opts = step_options(operators[i]) if operators is not None else dict(step.options)
            steps.append({step.operator: opts})
        executor_options = self.executor_options
        if executor is not None:
            secret = {o.name for o in executor.options if o.secret}
            executor_options = {k: v for k, v in executor_options.items() if k.replace("-", "_") not in secret}
        data: dict[str, Any] = {"input": rel(self.input), "out": rel(self.out) if out_as_given else ".",
                                "store": self.store, "executor": {"name": self.executor, **executor_options},
                                "seed": self.seed, "steps": steps}
        if self.allow_roots:
            data["allow_roots"] = [str(Path(r).resolve()) for r in self.allow_roots]
        if self.input is None:
            data.pop("input")
        import yaml

        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def step_options(op: Operator) -> dict[str, Any]:
    """A step's options as a pipeline file holds them: the operator's own, then its serving's under
    ``serving:`` (``name`` first), so every option keeps its owner (secrets and unset values left out)."""
    desc = op.describe()
    opts = {k: v for k, v in desc["options"].items() if v is not None}
    if "serving" in desc:
        serving = {k: v for k, v in desc["serving"]["options"].items() if v is not None}
        opts["serving"] = {"name": desc["serving"]["serving"], **serving}
    return opts


def _parse_step(item: Any, path: Path, index: int) -> StepSpec:
    if isinstance(item, str):
        return StepSpec(item, {})
    if isinstance(item, dict) and "op" in item:
        opts = dict(item)
        return StepSpec(str(opts.pop("op")), opts)
    if isinstance(item, dict) and len(item) == 1:
        (name, opts), = item.items()
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise ConfigError(f"pipeline file {path}: step {index} ({name}) options must be a mapping",
                              f"write `- {name}: {{option: value}}`")
        return StepSpec(str(name), dict(opts))
    raise ConfigError(f"pipeline file {path}: step {index} is not `- operator-name: {{options}}`",
                      "write each step as `- template: {template: \"...\"}`")


def build_operators(registry: Registry, spec: PipelineSpec) -> list[Operator]:
    """The configured operators of every step (options validated, nothing loaded)."""
    return [build_operator(registry, s.operator, s.options) for s in spec.steps]


def build_operator(registry: Registry, name: str, options: dict[str, Any]) -> Operator:
    """Instantiate an operator and its serving from a step's options (the CLI and YAML form).

    ``serving`` names the serving, or is a mapping with ``name`` and the serving's options (the
    form pipeline files are written in). A key beside it belongs to the operator if the operator
    declares it, else to the serving (the short form ``serving: flux`` + ``model: ...``); the
    nested form wins over the short one.
    """
    op_cls = registry.get_operator(name)
    opts = {k.replace("-", "_"): v for k, v in options.items()}
    serving_spec = opts.pop("serving", None)
    if not op_cls.capability:
        if serving_spec is not None:
            raise ConfigError(f"operator {name} uses no model", "remove --serving and its options")
        return op_cls(**opts)
    matching = [n for n, c in registry.classes("servings").items() if op_cls.capability in c.capabilities]
    if serving_spec is None and op_cls.serving_optional:
        return op_cls(**opts)
    if serving_spec is None:
        raise ConfigError(f"operator {name} needs a serving that can do {op_cls.capability}",
                          f"pass --serving with one of: {', '.join(matching) or 'none installed'}")
    serving_opts: dict[str, Any] = {}
    if isinstance(serving_spec, dict):
        serving_opts = {k.replace("-", "_"): v for k, v in serving_spec.items()}
        serving_spec = serving_opts.pop("name", None)
    serving_cls = registry.get_serving(str(serving_spec))
    if op_cls.capability not in serving_cls.capabilities:
        raise ConfigError(f"serving {serving_spec} cannot do {op_cls.capability} (needed by {name})",
                          f"use one of: {', '.join(matching) or 'none installed'}")
    op_names = {o.name for o in op_cls.all_options()}
    serving_names = {o.name for o in serving_cls.options}
    for key in list(opts):
        if key in op_names:
            continue
        if key in serving_names:
            serving_opts.setdefault(key, opts.pop(key))
        else:
            flags = lambda names: ", ".join("--" + n.replace("_", "-") for n in sorted(names))  # noqa: E731
            raise ConfigError(f"{name}: unknown option --{key.replace('_', '-')}",
                              f"{name} takes {flags(op_names)}; serving {serving_spec} takes {flags(serving_names)}")
    return op_cls(serving=serving_cls(**serving_opts), **opts)


def input_reader(registry: Registry, path: Path | None) -> Store | None:
    if path is None:
        return None
    cls = registry.store_for_suffix(Path(path).suffix)
    return cls() if cls else None


def run_pipeline(spec: PipelineSpec, progress: Progress | None = None) -> list[StepResult]:
    """Validate every step (options, servings, fields) before any model loads, then run the steps."""
    if spec.out is None:
        raise ConfigError("no run folder given", "pass --out DIR (or `out:` in the pipeline file)")
    registry = get_registry()
    store = registry.get_store(spec.store)()
    executor = registry.get_executor(spec.executor)(**spec.executor_options)
    operators = build_operators(registry, spec)
    check_servings(op.serving for op in operators if op.serving is not None)
    reader = input_reader(registry, spec.input)
    with Runner(spec.out, store, executor, seed=spec.seed, retry_failed=spec.retry_failed,
                progress=progress, allow_roots=spec.allow_roots) as runner:
        runner.write_pipeline_yaml(spec.to_yaml(operators, relative_to=spec.out, executor=executor))
        runner.run_source(spec.input, skip_bad_lines=spec.skip_bad_lines, id_key=spec.id_key, reader=reader)
        runner.check_fields(operators)
        for op in operators:
            runner.run_step(op)
        runner.retire_later_steps()
        runner.mark_complete()
        write_summary(spec.out, runner.results)
        return runner.results
