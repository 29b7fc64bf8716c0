"""How files travel between the driver and Ray workers.

- ``shared``: the run folder is on storage every node sees at the same path (NFS, a single box):
  workers write images straight into it. The driver leaves a marker file with a random token in
  the run folder; a worker that reads the same token there knows it sees the same folder.
- ``ship``: a worker writes into a scratch copy of the step layout and returns the files' bytes
  with the outcomes; the driver writes them into the run folder before it hands the batch to the
  runner, so commits still follow their files. Reference images (edit, judge) are read through
  ``ctx.resolve()``, which fetches them from a small file-server actor on the driver's node.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixmill.context import StepContext

MARKER_PREFIX = ".pixmill-ray-"


def write_marker(run_dir: Path) -> tuple[Path, str]:
    """Leave a marker with a fresh token in the run folder: (path, token)."""
    token = secrets.token_hex(16)
    path = Path(run_dir) / f"{MARKER_PREFIX}{token[:8]}"
    path.write_text(token, encoding="utf-8")
    return path, token


def sees_marker(path: str, token: str) -> bool:
    """Whether this process sees the driver's run folder (the marker, with its token)."""
    try:
        return Path(path).read_text(encoding="utf-8") == token
    except OSError:
        return False


class FileServer:
    """Serves the bytes of files the driver's context resolves (reference images) to workers in
    ship mode. Runs as an actor pinned to the driver's node."""

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def read(self, path: str, checked: bool = False) -> tuple[bytes | None, str | None]:
        """(bytes or None when missing, None) or (None, the reason the roots rule refuses it)."""
        try:
            resolved = self.ctx.readable(path) if checked else self.ctx.resolve(path)
        except ValueError as exc:  # the driver's roots rule: outside the run and input folders
            return None, str(exc)
        try:
            return (resolved.read_bytes() if resolved.is_file() else None), None
        except OSError:
            return None, None


@dataclass
class ShippedContext(StepContext):
    """A worker's view of a step in ship mode: ``run_dir``/``step_dir`` are a scratch copy of the
    step layout, and :meth:`resolve` fetches files named by rows from the driver's node."""

    file_server: Any = None
    cache_dir: Path | None = None

    def resolve(self, path: str) -> Path:
        return self._fetch(path, checked=False)

    def readable(self, path: str) -> Path:
        # The roots rule is the driver's: its file server checks the path where the file is.
        return self._fetch(path, checked=True)

    def _fetch(self, path: str, checked: bool) -> Path:
        import ray

        assert self.cache_dir is not None
        # One cache entry per name asked for: the same reference image is fetched once per worker.
        local = self.cache_dir / hashlib.sha1(path.encode()).hexdigest()[:16] / (Path(path).name or "file")
        if not local.exists():
            data, refused = ray.get(self.file_server.read.remote(path, checked))
            if refused is not None:
                from pixmill.file_roots import OutsideRoots

                raise OutsideRoots(refused)
            if data is None:
                return local  # missing on the driver too: the operator reports it by name
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(local)
        return local


def scratch_context(ctx: StepContext, file_server: Any) -> ShippedContext:
    """A ship-mode copy of ``ctx`` under a fresh scratch folder on this node."""
    root = Path(tempfile.mkdtemp(prefix="pixmill-ray-"))
    step_rel = Path(ctx.step_dir).relative_to(ctx.run_dir)
    run_dir = root / "run"
    step_dir = run_dir / step_rel
    step_dir.mkdir(parents=True)
    return ShippedContext(run_dir=run_dir, step_dir=step_dir, input_dir=root / "input", seed=ctx.seed,
                          step_name=ctx.step_name, committed_count=ctx.committed_count,
                          file_server=file_server, cache_dir=root / "refs")


def collect_files(ctx: ShippedContext) -> dict[str, bytes]:
    """Take the files a batch wrote under the scratch step folder: {path relative to the run
    folder: bytes}, removing them so the next batch ships only its own."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(ctx.step_dir):
        for name in names:
            path = Path(dirpath) / name
            out[path.relative_to(ctx.run_dir).as_posix()] = path.read_bytes()
            path.unlink()
    return out


def write_shipped(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write shipped files into the run folder (each atomically), before their rows are committed."""
    root = Path(run_dir).resolve()
    for rel, data in files.items():
        target = (root / rel).resolve()
        if root not in target.parents:
            raise ValueError(f"a worker shipped a file outside the run folder: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.shipping")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def remove_scratch(ctx: StepContext) -> None:
    import shutil

    if isinstance(ctx, ShippedContext) and ctx.cache_dir is not None:
        shutil.rmtree(ctx.cache_dir.parent, ignore_errors=True)
