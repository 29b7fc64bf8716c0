"""``pixmill status RUN``: what each step did, and why rows failed."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import click

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def reason_pattern(reason: str) -> str:
    """A failure reason with its row-specific parts masked (quoted text, numbers), so that the same
    failure on many rows ("unparsable answer ... raw: '...'", "HTTP 500 ... request 123") groups."""
    return _NUMBER.sub("N", _QUOTED.sub("'…'", reason))[:300]


def run_status(run_dir: Path, examples: int = 3) -> list[dict]:
    """Per step: name, folder, complete, done, failed, rows, and failure reasons grouped by pattern
    (most frequent first), each with an example reason and example row ids."""
    from ..run import Run  # loads with the command, not with `pixmill --help`

    steps = []
    for run_step in Run(run_dir).steps:
        info, state, damaged = run_step.info, run_step.counts, run_step.damaged()
        counts: Counter[str] = Counter()
        example: dict[str, str] = {}
        ids: dict[str, list[str]] = {}
        for fail in state.failed.values():
            reason = str(fail.get("reason", ""))
            pattern = reason_pattern(reason)
            counts[pattern] += 1
            example.setdefault(pattern, reason[:500])
            if len(ids.setdefault(pattern, [])) < examples:
                ids[pattern].append(fail["id"])
        step = {
            "name": info.get("name", run_step.name), "folder": run_step.name, "complete": bool(info.get("complete")),
            "done": state.done_count if info.get("name") != "input" else state.rows, "failed": len(state.failed),
            "rows": state.rows, "seconds": info.get("seconds"),
            "failures": [{"reason": example[p], "count": c, "example_ids": ids[p]} for p, c in counts.most_common()],
        }
        if damaged:
            step["complete"] = False
            step["damaged"] = [f"{part}: {why}" for part, why in damaged.items()]
        if info.get("skipped_lines"):
            step["skipped_lines"] = info["skipped_lines"]
        steps.append(step)
    return steps


@click.command("status")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def command(run_dir: Path, as_json: bool) -> None:
    """Show each step of a run: rows done, failed, and the failure reasons grouped."""
    steps = run_status(run_dir)
    if as_json:
        click.echo(json.dumps(steps, indent=2))
        return
    click.echo(f"{'step':<26}{'state':<10}{'rows':>10}{'done':>10}{'failed':>8}")
    for s in steps:
        state = "damaged" if s.get("damaged") else "complete" if s["complete"] else "partial"
        click.echo(f"{s['folder']:<26}{state:<10}{s['rows']:>10,}{s['done']:>10,}{s['failed']:>8,}")
        for f in s["failures"][:10]:
            click.echo(f"    {f['count']:>6} x {f['reason']}  (e.g. {', '.join(f['example_ids'])})")
        if len(s["failures"]) > 10:
            click.echo(f"    ... and {len(s['failures']) - 10} other reasons (--json for all)")
        for damage in s.get("damaged", []):
            click.echo(f"    damaged part {damage}; the next run of the same command recomputes its rows")
        if s.get("skipped_lines"):
            click.echo(f"    {s['skipped_lines']} malformed input lines skipped (see {s['folder']}/skipped.jsonl)")
