"""The plugin without a running Ray: registration, options, manifest hygiene, version checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pixmill.errors import ConfigError, PixmillError


def test_pixmill_plugins_lists_the_executor_and_help_imports_no_ray():
    exe = str(Path(sys.executable).parent / "pixmill")
    listing = subprocess.run([exe, "plugins"], capture_output=True, text=True, check=True).stdout
    assert "pixmill-ray" in listing and '"ray"' in listing
    code = "import sys; from pixmill.cli import build_cli; from pixmill.plugins import get_registry; " \
           "build_cli(); get_registry().get_executor('ray'); print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_the_manifest_entry_has_no_runtime_env_and_no_credentials():
    from pixmill_ray.executor import RayExecutor

    ex = RayExecutor(address="ray://user:s3cret@head:10001", runtime_env='{"env_vars": {"HF_TOKEN": "hf_x"}}',
                     replicas="4")
    assert ex.config["runtime_env"] == {"env_vars": {"HF_TOKEN": "hf_x"}} and ex.config["replicas"] == 4
    described = ex.describe()
    assert described["name"] == "ray" and "runtime_env" not in described["options"]
    assert described["options"]["address"] == "ray://head:10001"


def test_yaml_executor_mapping_and_pipeline_yaml_without_secrets(tmp_path):
    from pixmill.pipeline import PipelineSpec
    from pixmill.plugins import get_registry

    path = tmp_path / "p.yaml"
    path.write_text("executor: {name: ray, replicas: 3, runtime_env: {env_vars: {A: b}}}\nsteps:\n  - filter: "
                    "{where: 'n > 1'}\n")
    spec = PipelineSpec.from_yaml(path)
    assert spec.executor == "ray" and spec.executor_options["replicas"] == 3
    executor = get_registry().get_executor(spec.executor)(**spec.executor_options)
    written = spec.to_yaml(executor=executor)
    assert "replicas: 3" in written and "runtime_env" not in written


def test_bad_executor_options_fail_with_the_fix():
    from pixmill_ray.cluster import replica_needs
    from pixmill_ray.executor import RayExecutor

    with pytest.raises(ConfigError, match="choose one of auto, shared, ship"):
        RayExecutor(files="nfs")
    with pytest.raises(ConfigError, match="whole number of GPUs"):
        replica_needs({"gpus_per_replica": 1.5}, {})
    assert replica_needs({}, {"gpus": 1.0, "cpus": 2}) == (1.0, 2.0)
    assert replica_needs({"gpus_per_replica": 0.5}, {"gpus": 1.0}) == (0.5, 1.0)


def test_a_node_with_other_versions_is_refused_with_the_differences():
    from pixmill_ray.versions import check_versions, installed_versions

    here = installed_versions()
    assert "pixmill" in here and "pixmill-ray" in here
    check_versions(here, dict(here), "the Ray node 10.0.0.2")
    other = {**here, "pixmill": "0.0.1"}
    other.pop("pixmill-ray")
    with pytest.raises(PixmillError, match=r"10\.0\.0\.2 runs other pixmill versions.*pixmill-ray .* here, missing"):
        check_versions(here, other, "the Ray node 10.0.0.2")


def test_servings_say_what_a_replica_needs_without_torch():
    from pixmill.plugins import get_registry

    registry = get_registry()
    flux = registry.get("servings", "flux")
    qwen = registry.get("servings", "qwen-vl")
    assert flux(model="x").replica_resources() == {"gpus": 1.0, "cpus": 1.0}
    assert flux(model="x", devices="cpu").replica_resources() == {"gpus": 0.0, "cpus": 1.0}
    assert qwen(engine="openai").replica_resources() is None
    assert qwen(engine="vllm", tensor_parallel_size=2).replica_resources() == {"gpus": 2.0, "cpus": 1.0}
    assert registry.get("servings", "openai-images")().replica_resources() is None
