"""Pipelines as data: the spec that the CLI chain, a YAML file and the Python API all build,
and the one function that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .executor import Executor
from .operator import Operator
from .plugins import Registry, get_registry
from .progress import Progress
from .rows import ID_KEY
from .runner import Runner, StepResult, write_summary
from .store import Store

RUN_KEYS = ("input", "out", "store", "executor", "executor_options", "seed", "retry_failed",
            "skip_bad_lines", "id_key")


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

    @classmethod
    def from_yaml(cls, path: Path) -> PipelineSpec:
        """Load a pipeline file. ``input`` and ``out`` are relative to the file's folder."""
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
        if isinstance(data.get("executor"), dict):  # `executor: {name: ray, replicas: 4}`
            options = dict(data["executor"])
            data["executor"] = str(options.pop("name", "local"))
            data["executor_options"] = {**options, **(data.get("executor_options") or {})}
        base = path.resolve().parent
        spec = cls(steps=steps, **{k: data[k] for k in RUN_KEYS if k in data and k not in ("input", "out")})
        if data.get("input"):
            spec.input = base / data["input"]
        if data.get("out"):
            spec.out = base / data["out"]
        return spec

    def to_yaml(self, operators: list[Operator] | None = None, relative_to: Path | None = None,
                executor: Executor | None = None) -> str:
        """The pipeline as YAML. With ``operators`` (and ``executor``), their resolved options
        (secrets removed)."""
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            p = Path(p).resolve()
            if relative_to is not None:
                try:
                    import os

                    return os.path.relpath(p, Path(relative_to).resolve())
                except ValueError:
                    pass
            return str(p)

        steps: list[dict[str, Any]] = []
        for i, step in enumerate(self.steps):
            if operators is not None:
                desc = operators[i].describe()
                opts = dict(desc["options"])
                if "serving" in desc:
                    opts = {"serving": desc["serving"]["serving"], **opts, **desc["serving"]["options"]}
                opts = {k: v for k, v in opts.items() if v is not None}
            else:
                opts = dict(step.options)
            steps.append({step.operator: opts})
        data: dict[str, Any] = {"input": rel(self.input), "out": ".", "store": self.store,
                                "executor": self.executor, "seed": self.seed, "steps": steps}
        executor_options = self.executor_options
        if executor is not None:
            secret = {o.name for o in executor.options if o.secret}
            executor_options = {k: v for k, v in executor_options.items() if k.replace("-", "_") not in secret}
        if executor_options:
            data["executor_options"] = executor_options
        if self.input is None:
            data.pop("input")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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


def build_operator(registry: Registry, name: str, options: dict[str, Any]) -> Operator:
    """Instantiate an operator and its serving from flat options (the CLI and YAML form).

    ``serving`` names the serving (or is a mapping with ``name`` and its options); every other option
    goes to the operator if it declares it, else to the serving.
    """
    op_cls = registry.get_operator(name)
    opts = {k.replace("-", "_"): v for k, v in options.items()}
    serving_spec = opts.pop("serving", None)
    if not op_cls.capability:
        if serving_spec is not None:
            raise ConfigError(f"operator {name} uses no model", "remove --serving and its options")
        return op_cls(**opts)
    matching = [n for n, c in registry.classes("servings").items() if op_cls.capability in c.capabilities]
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
            serving_opts[key] = opts.pop(key)
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
    """Validate every step (options, servings, keys) before any work, then run the steps in order."""
    if spec.out is None:
        raise ConfigError("no run folder given", "pass --out DIR (or `out:` in the pipeline file)")
    registry = get_registry()
    store = registry.get_store(spec.store)()
    executor = registry.get_executor(spec.executor)(**spec.executor_options)
    operators = [build_operator(registry, s.operator, s.options) for s in spec.steps]
    for op in operators:
        if op.serving is not None:
            op.serving.check()
    reader = input_reader(registry, spec.input)
    with Runner(spec.out, store, executor, seed=spec.seed, retry_failed=spec.retry_failed,
                progress=progress) as runner:
        runner.write_pipeline_yaml(spec.to_yaml(operators, relative_to=spec.out, executor=executor))
        runner.run_source(spec.input, skip_bad_lines=spec.skip_bad_lines, id_key=spec.id_key, reader=reader)
        for op in operators:
            runner.run_step(op)
        runner.retire_later_steps()
        write_summary(spec.out, runner.results)
        return runner.results
