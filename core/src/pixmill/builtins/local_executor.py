"""The local executor: batches run in this process, several at once for HTTP servings."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Iterable, Iterator

from ..executor import Batch, Executor, StepTask, run_batch
from ..interrupt import Interrupted, cancel_in_flight
from ..operator import Outcome
from ..options import Option


class LocalExecutor(Executor):
    """Runs batches in this process. Up to ``workers`` batches are in flight at once (threads);
    by default the operator's ``parallel_batches`` (1 for local models, more for HTTP servings).
    A serving that reports several devices (GPUs) runs in one worker process per device instead
    (see :mod:`pixmill.builtins.process_pool`)."""

    name = "local"
    description = "in-process, bounded concurrency (threads)"
    options = (Option("workers", int, None, "batches in flight at once (default: what the serving asks for)", cache=False),)

    def map(self, task: StepTask, batches: Iterable[Batch]) -> Iterator[tuple[Batch, list[Outcome]]]:
        op, ctx = task.operator, task.ctx
        workers = 1 if op.stateful else int(self.config.get("workers") or op.parallel_batches)
        serving = op.serving
        devices = serving.devices() if serving is not None and not op.stateful else []
        if len(devices) > 1:
            # One worker process per device (GPU), each with its own replica of the serving.
            from .process_pool import map_on_devices

            yield from map_on_devices(task, batches, devices)
            return
        if serving is not None:
            serving.load()
        try:
            op.start(ctx)
            if workers <= 1:
                for batch in batches:
                    yield batch, run_batch(op, batch, ctx)
                return
            yield from _threaded(op, ctx, batches, workers)
        finally:
            if serving is not None:
                serving.unload()


def _threaded(op, ctx, batches: Iterable[Batch], workers: int) -> Iterator[tuple[Batch, list[Outcome]]]:
    source = iter(batches)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixmill-batch") as pool:
        pending: dict[Future, Batch] = {}

        def fill() -> None:
            # Keep exactly `workers` batches in flight: never read the input ahead of the workers.
            while len(pending) < workers:
                batch = next(source, None)
                if batch is None:
                    return
                pending[pool.submit(run_batch, op, batch, ctx)] = batch

        try:
            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                finished = [(pending.pop(fut), fut) for fut in done]
                fill()  # refill before handing results over: the caller's commit must not idle the workers
                for batch, fut in finished:
                    if isinstance(fut.exception(), Interrupted):
                        continue  # cut short by Ctrl-C: neither done nor failed, the next run redoes it
                    yield batch, fut.result()
        except BaseException:
            # Ctrl-C, or an error that stops the step: abandon what is in flight rather than wait
            # for it on the way out (the pool joins its threads when this block exits).
            for fut in pending:
                fut.cancel()
            cancel_in_flight()
            raise
