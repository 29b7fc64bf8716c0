"""The Executor base class, and the batch call every executor shares."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator

from .context import StepContext
from .errors import environment_fault, failure_reason, is_environment_error
from .operator import Failed, Operator, Outcome
from .options import Option

log = logging.getLogger("pixmill.executor")

Batch = list[dict]


@dataclass
class StepTask:
    """Everything needed to run one step's batches anywhere, picklable for worker processes.

    ``operator`` is the configured operator (with its serving, not loaded). Executors that run
    batches in other processes rebuild it from :meth:`rebuild` there.
    """

    operator: Operator
    ctx: StepContext

    def spec(self) -> dict[str, Any]:
        op = self.operator
        serving = op.serving.spec() if op.serving is not None else None
        return {"operator": (type(op), dict(op.config)), "serving": serving, "ctx": self.ctx}

    @staticmethod
    def rebuild(spec: dict[str, Any]) -> StepTask:
        serving = None
        if spec["serving"] is not None:
            cls, opts = spec["serving"]
            serving = cls(**opts)
        op_cls, op_opts = spec["operator"]
        return StepTask(op_cls(serving=serving, **op_opts), spec["ctx"])


class Executor:
    """Decides where a step's batches run: in this process, in one worker per GPU, on Ray...

    :meth:`map` receives a lazy stream of batches and yields ``(batch, outcomes)`` as batches finish,
    in any order, each ``batch`` being the very list object it received (the runner keys its
    bookkeeping on it); it must pull batches lazily (bounded work in flight), so a step over millions of
    rows never holds them all. It loads the operator's serving where the batches run, calls
    ``operator.start(ctx)`` once there, and uses :func:`run_batch` for every batch so that failures
    are isolated the same way everywhere. Stateful operators must be run in order in one worker.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **options: Any):
        from .options import resolve_options

        self.config = resolve_options(self.options, options, owner=f"executor {self.name}")

    def map(self, task: StepTask, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The manifest entry: name and options, secrets removed."""
        from .options import public_options

        return {"name": self.name, "options": public_options(self.options, self.config)}

    def close(self) -> None:
        """Free what the executor holds across steps (a cluster connection); called once when the
        run ends. Default: nothing."""


def run_batch(operator: Operator, rows: Batch, ctx: StepContext) -> list[Outcome]:
    """Process one batch, isolating failures: if the whole batch raises, retry its rows one by one,
    so a bad row fails alone with its reason and the others still succeed.

    An error of the machine (disk full, an unwritable folder, out of memory: see
    :func:`pixmill.errors.is_environment_error`) is no row's fault: it is raised as
    :class:`~pixmill.errors.EnvironmentFault` and stops the step, and no row is marked failed."""
    try:
        outcomes = operator.process(rows, ctx)
        if len(outcomes) != len(rows):
            raise RuntimeError(
                f"operator {operator.name} returned {len(outcomes)} outcomes for {len(rows)} rows"
            )
        return outcomes
    except Exception as exc:  # noqa: BLE001 - any error becomes a recorded row failure
        if is_environment_error(exc):
            raise environment_fault(exc, f"step {ctx.step_name or operator.name}") from exc
        reason = failure_reason(exc)
        if len(rows) == 1:
            return [Failed(reason)]
        log.warning("batch of %d rows failed (%s); retrying rows one by one", len(rows), reason)
        return [run_batch(operator, [row], ctx)[0] for row in rows]

