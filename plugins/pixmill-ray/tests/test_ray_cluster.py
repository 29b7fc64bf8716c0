"""A two-node Ray cluster on one machine (ray.cluster_utils.Cluster): replicas on both nodes, and a
node removed mid-step loses nothing: its running batch is re-queued once, every row ends done once."""

from __future__ import annotations

import threading
import time

import pytest
from pixmill import Storage
from pixmill.ops.images import GenerateImages
from pixmill_testing import step_failures, step_rows, write_jsonl

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def cluster(ray_env):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # The head takes no replica (0 CPUs): each of the two worker nodes holds one.
    store = 80 * 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store,
                                                      "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1, object_store_memory=store) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env=ray_env, logging_level="WARNING")
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def test_batches_run_on_both_nodes_and_a_removed_node_loses_nothing(tmp_path, cluster, caplog):
    from ray_paint import RayPaint

    caplog.set_level("WARNING", logger="pixmill")
    c, nodes = cluster
    rows = [{"id": str(i), "prompt": f"prompt {i}"} for i in range(32)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"

    def nodes_seen() -> set:
        try:
            return {r["image_meta"]["node"] for r in step_rows(out, 1)}
        except Exception as exc:  # noqa: BLE001 - the run is being written; keep polling
            errors.append(repr(exc))
            return set()

    errors: list[str] = []

    def remove_second_node_once_both_worked() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(nodes_seen()) < 2:
            time.sleep(0.05)
        c.remove_node(nodes[1])

    remover = threading.Thread(target=remove_second_node_once_both_worked, daemon=True)
    remover.start()
    with Storage(input=inp, out=out, executor="ray",
                 executor_options={"replicas": 2, "cpus_per_replica": 1}) as st:
        result = GenerateImages(serving=RayPaint(delay=0.5), batch_size=2, output_key="image").run(st.step())
    remover.join(timeout=5)
    made = step_rows(out, 1)
    assert result.failed == 0 and not step_failures(out, 1)
    assert sorted(int(r["id"]) for r in made) == list(range(32)), "every row done exactly once"
    assert len({r["image_meta"]["node"] for r in made}) == 2, "batches ran on both worker nodes"
    assert all((out / r["image"]).is_file() for r in made)
    assert "was lost" in caplog.text and "go back to the queue" in caplog.text, \
        f"the node went away mid-step (reading the run while it ran: {errors[-3:]})"
