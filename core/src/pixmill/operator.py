"""The Operator base class: one pipeline step that transforms batches of rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

from .context import StepContext
from .errors import ConfigError
from .fields import meta_field
from .options import Option, key_options, public_options, resolve_options

if TYPE_CHECKING:
    from .serving import Serving


@dataclass(frozen=True)
class Failed:
    """The outcome of a row that failed: it is recorded with ``reason`` and retried on request."""

    reason: str


@dataclass(frozen=True)
class Dropped:
    """A row the operator drops on purpose (a duplicate, an unsafe image), with why.

    Unlike a plain ``None`` the drop is recorded: ``reason`` and ``info`` (small JSON fields such as
    ``{"duplicate_of": "17"}``) go to the step's ledger and ``dropped.jsonl``, and the gallery shows
    the row with them. The row counts as done: a rerun does not offer it again.
    """

    reason: str
    info: dict = field(default_factory=dict)


# What ``process`` returns for each input row, in the same order:
#   dict        -> one output row (keep or transform)
#   None        -> dropped (a filter said no)
#   Dropped     -> dropped, with the reason recorded (dropped.jsonl, gallery)
#   list[dict]  -> several output rows (expanding operator); rows without an "id" get parent/index
#   Failed      -> the row failed, with a reason
Outcome = Union[dict, None, list, Failed, Dropped]

BATCH_SIZE = Option("batch_size", int, None, "rows per batch (default: the operator's own)", cache=False)


class Operator:
    """One pipeline step. Subclasses set the class attributes and implement :meth:`process`.

    An operator knows nothing about files, retries or resume: the runner feeds it batches of rows
    that are not done yet and commits what it returns. Options are declared once in ``options`` and
    become CLI flags, YAML keys and keyword arguments.

    - ``capability``: the serving capability it needs (``"text-to-image"``, ``"image-edit"``,
      ``"vision-chat"``, ``"text-llm"``...), or ``None`` for model-free operators.
    - ``serving_optional``: the operator works without a serving too (``check-prompts`` uses a
      moderation serving only when ``--serving`` is given).
    - ``stateful``: the operator keeps state across batches (``head``, ``dedupe``); the runner then
      feeds it every batch in order in one worker and calls :meth:`start` with the committed rows.
    - ``version``: bump it when a change alters outputs, so cached steps recompute.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    capability: ClassVar[str | None] = None
    serving_optional: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 1000

    def __init__(self, serving: Serving | None = None, **options: Any):
        self.serving = serving
        self.config = resolve_options(self.all_options(), options, owner=self.name or type(self).__name__)
        if self.capability and serving is not None and self.capability not in serving.capabilities:
            raise ConfigError(
                f"operator {self.name}: serving {serving.name!r} cannot do {self.capability!r}",
                serving.capability_hint(self.capability)
                or "choose a serving with that capability (see `pixmill servings`)",
            )

    @classmethod
    def all_options(cls) -> tuple[Option, ...]:
        return (*cls.options, BATCH_SIZE)

    @property
    def batch_size(self) -> int:
        return int(self.config.get("batch_size") or self.default_batch_size)

    @property
    def parallel_batches(self) -> int:
        """How many batches may run at once in one process (HTTP servings raise this)."""
        if self.serving is not None:
            return max(1, int(getattr(self.serving, "parallel_batches", 1)))
        return 1

    def identity(self) -> dict[str, Any]:
        """What enters the step key: name, version, output-affecting options, serving identity."""
        ident: dict[str, Any] = {
            "operator": self.name,
            "version": self.version,
            "options": key_options(self.all_options(), self.config),
        }
        if self.serving is not None:
            ident["serving"] = self.serving.identity()
        return ident

    def describe(self) -> dict[str, Any]:
        """A manifest entry (secrets removed)."""
        out: dict[str, Any] = {"operator": self.name, "options": public_options(self.all_options(), self.config)}
        if self.serving is not None:
            out["serving"] = self.serving.describe()
        return out

    # -- fields (checked before any model loads) ------------------------------------------------
    def fields_read(self) -> list[tuple[str, ...]]:
        """The row fields this step needs, each as a tuple of alternatives (any one will do). The
        runner checks them against the input rows and the fields earlier steps write, so a chain
        whose keys cannot match fails before any model loads. Default: none declared."""
        return []

    def fields_written(self) -> list[str]:
        """The row fields this step adds. Default: its ``output_key`` (with ``<output_key>_meta``),
        if it has one."""
        key = self.config.get("output_key")
        return [key, meta_field(key)] if key else []

    # -- lifecycle (called by the executor in the process that runs the batches) --------------
    def start(self, ctx: StepContext) -> None:
        """Called once before the first batch, after the serving is loaded. Default: nothing."""

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        """Transform a batch: return one :data:`Outcome` per input row, in order.

        Raising fails the batch: the runner then retries its rows one by one, so that one bad row
        fails alone. Raise :class:`pixmill.errors.RowError` in a single-row call to fail that row.
        """
        raise NotImplementedError

    # -- DataFlow-MM shaped Python API --------------------------------------------------------
    def run(self, storage: Any, **options: Any) -> Any:
        """Run this operator as the next step of ``storage`` (a :class:`pixmill.Storage`).

        ``options`` override the constructor's (typically ``input_key=...``, ``output_key=...``).
        Returns the step's summary.
        """
        op = self.with_options(**options) if options else self
        return storage.run_operator(op)

    def with_options(self, **options: Any) -> Operator:
        merged = {**{k: v for k, v in self.config.items()}, **options}
        return type(self)(serving=self.serving, **merged)
