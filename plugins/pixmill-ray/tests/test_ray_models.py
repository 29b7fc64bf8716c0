"""Tiny FLUX and FLUX-Kontext pipelines (the real diffusers loading code, random weights) on Ray
replicas: the same rows, file names and pixels as the local executor, with files written straight
into the run folder (shared) or shipped back to the driver (ship), reference images included."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixmill_testing import step_rows, write_jsonl

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pixmill_diffusers.tiny import make_tiny

    root = tmp_path_factory.mktemp("models")
    return {kind: make_tiny(root / kind, kind) for kind in ("flux", "flux-kontext")}


def _steps(models, edit: bool) -> list:
    from pixmill.pipeline import StepSpec

    steps = [StepSpec("generate-images", {"serving": "flux", "model": str(models["flux"]), "width": 32,
                                          "height": 32, "steps": 2, "devices": "cpu", "batch_size": 2,
                                          "output_key": "image"})]
    if edit:
        steps.append(StepSpec("edit-images", {"serving": "flux-kontext", "model": str(models["flux-kontext"]),
                                              "input_key": "prompt", "image_key": "image", "steps": 2,
                                              "max_area": 32 * 32, "devices": "cpu", "batch_size": 2,
                                              "output_key": "edited_image"}))
    return steps


def _run(tmp_path: Path, models, name: str, edit: bool, **executor_options) -> Path:
    """Run the pipeline into tmp_path/name; returns the run folder."""
    from pixmill import Run
    from pixmill.pipeline import PipelineSpec, run_pipeline

    rows = [{"id": str(i), "prompt": f"a small picture number {i}"} for i in range(6)]
    inp = write_jsonl(tmp_path / "prompts.jsonl", rows)
    spec = PipelineSpec(steps=_steps(models, edit), input=inp, out=tmp_path / name,
                        executor="ray" if executor_options else "local", executor_options=executor_options)
    results = run_pipeline(spec)
    assert all(r.failed == 0 for r in results), [Run(tmp_path / name).steps[-1].failures()[:1]]
    assert results[-1].new_done == 6, "the last step ran (earlier ones may be cached)"
    return tmp_path / name


def _same_outputs(rt, a: Path, b: Path, step: int, key: str) -> None:
    rows_a = sorted(step_rows(a, step), key=lambda r: r["id"])
    rows_b = sorted(step_rows(b, step), key=lambda r: r["id"])
    assert [r[key] for r in rows_a] == [r[key] for r in rows_b], "the same rows and file names"
    for ra in rows_a:
        assert rt.pixels(a / ra[key]) == rt.pixels(b / ra[key]), f"byte-identical pixels for row {ra['id']}"


def test_flux_and_kontext_on_ray_make_the_local_pixels_shared_and_shipped(tmp_path, rt, models, local_ray):
    import torch

    # CPU float sums depend on the thread count: compare at the one thread a CPU replica gets from
    # Ray (OMP_NUM_THREADS follows its CPU share), as the device pool's CPU workers also use.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _run(tmp_path, models, "local", edit=True)
    finally:
        torch.set_num_threads(threads)
    # Executor options never enter a step key: the second run reuses the first one's generate step
    # (made with files written straight into the run folder) and ships the Kontext edits back, the
    # generated images reaching the replica through the driver's file server.
    on_ray = _run(tmp_path, models, "ray", edit=False, replicas=1, cpus_per_replica=0.5, files="shared")
    _same_outputs(rt, local, on_ray, 1, "image")
    _run(tmp_path, models, "ray", edit=True, replicas=1, cpus_per_replica=0.5, files="ship")
    _same_outputs(rt, local, on_ray, 1, "image")
    _same_outputs(rt, local, on_ray, 2, "edited_image")
    assert not list(on_ray.glob(".pixmill-ray-*")), "the shared-storage marker is removed"
