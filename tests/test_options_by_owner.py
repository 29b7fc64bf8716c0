"""Every option has one owner, and a pipeline file reruns exactly: for every registered operator and
every serving that fits it, non-default values for every option survive pipeline.yaml unchanged,
and the CLI reaches a serving's option even when the operator has one of the same name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import run_cli, write_jsonl
from pixmill.options import Option
from pixmill.pipeline import PipelineSpec, StepSpec, build_operator
from pixmill.plugins import get_registry

# Values that must be valid, not just different from the default.
VALID = {
    "where": "len(prompt) < 5",
    "template": "x {prompt}",
    "rubric": "edit",
    "question": 'Is it "{prompt}"?',
    "categories": ["replace", "add"],
    "ratios": {"replace": 2, "add": 1},
    "categories_file": None,  # a file must exist: left at its default
    "blocklist": None,  # files must exist: left at its default
    "head": "<a file>",  # the aesthetic head is required: a real (tiny) one is written per test
    "base_url": "http://127.0.0.1:9/v1",
    "devices": "cpu",
    "size": "64x48",
    "scheduler": "EulerDiscreteScheduler",
}
# Per operator, where options depend on each other (control-image takes --model and --detector only
# for the kinds that run models, --detector only for pose).
VALID_FOR = {"control-image": {"kind": "pose"}}


def non_default(opt: Option):
    if opt.name in VALID:
        return VALID[opt.name]
    if opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    if opt.type is bool:
        return not opt.default
    if opt.type is int:
        return (opt.default or 0) + 3
    if opt.type is float:
        return (opt.default or 0.0) + 0.25
    if opt.type is list:
        return ["a", "b"]
    if opt.type is dict:
        return {"k": 1}
    return f"v-{opt.name}"


def values(options, owner: str = "") -> dict:
    out = {o.name: v for o in options if not o.secret and (v := non_default(o)) is not None}
    return {**out, **VALID_FOR.get(owner, {})}


def cases():
    registry = get_registry()
    servings = registry.classes("servings")
    for name, op_cls in sorted(registry.classes("operators").items()):
        if not op_cls.capability:
            yield name, None
            continue
        for sname, s_cls in sorted(servings.items()):
            if op_cls.capability in s_cls.capabilities:
                yield name, sname


@pytest.mark.parametrize("operator, serving", list(cases()))
def test_pipeline_yaml_rebuilds_every_step_with_the_same_key_and_options(tmp_path, operator, serving):
    registry = get_registry()
    options = values(registry.get_operator(operator).all_options(), operator)
    if options.get("head") == VALID["head"]:
        from pixmill_safety.tiny import make_tiny_head

        options["head"] = str(make_tiny_head(tmp_path / "head.pth"))
    if serving is not None:
        options["serving"] = {"name": serving, **values(registry.get_serving(serving).options)}
    op = build_operator(registry, operator, options)
    spec = PipelineSpec(steps=[StepSpec(operator, options)], out=tmp_path)
    path = tmp_path / "pipeline.yaml"
    path.write_text(spec.to_yaml([op], relative_to=tmp_path), encoding="utf-8")
    again = PipelineSpec.from_yaml(path)
    op2 = build_operator(registry, again.steps[0].operator, again.steps[0].options)
    assert op2.identity() == op.identity(), "the step key must not change"
    assert op2.config == op.config, "each operator option stays the operator's"
    if serving is not None:
        assert op2.serving.config == op.serving.config, "each serving option stays the serving's"
        written = yaml.safe_load(path.read_text())["steps"][0][operator]["serving"]
        assert written["name"] == serving and "api_key" not in written


def test_a_serving_option_that_shares_its_name_with_the_operators_keeps_its_owner(tmp_path):
    rows = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a cat", "images": ["a.png"]}])
    args = ["-i", str(rows), "-o", str(tmp_path / "run"), "--dry-run", "judge", "--max-tokens", "100",
            "--serving", "openai-llm", "--serving-max-tokens", "50", "--base-url", "http://127.0.0.1:9/v1"]
    dry = run_cli("run", *args, check=True)
    step = yaml.safe_load(dry.stdout)["steps"][0]["judge"]
    assert step["max_tokens"] == 100 and step["serving"]["max_tokens"] == 50
    assert step["serving"]["name"] == "openai-llm" and step["serving"]["base_url"] == "http://127.0.0.1:9/v1"
    # The dry run shows the real run folder; the file it prints rebuilds the same step.
    assert yaml.safe_load(dry.stdout)["out"] == str(tmp_path / "run")
    (tmp_path / "p.yaml").write_text(dry.stdout)
    registry = get_registry()
    from_cli = build_operator(registry, "judge", {"max_tokens": 100, "serving": {
        "name": "openai-llm", "max_tokens": 50, "base_url": "http://127.0.0.1:9/v1"}})
    from_file = PipelineSpec.from_yaml(tmp_path / "p.yaml").steps[0]
    assert build_operator(registry, from_file.operator, from_file.options).identity() == from_cli.identity()


def test_help_with_a_serving_shows_that_serving_only_with_its_own_defaults():
    flux = run_cli("run", "generate-images", "--serving", "flux", "--help", check=True).stdout
    assert "--max-sequence-length" in flux and "--lora-scale" in flux
    assert "--size" not in flux and "--base-url" not in flux, "no other serving's options"
    assert "--images-per-call" in flux and "--serving-" not in flux, "no serving option shares a name with the operator"
    images = run_cli("run", "generate-images", "--serving", "openai-images", "--help", check=True).stdout
    assert "--size" in images and "--max-sequence-length" not in images
    assert "[default:gpt-image-1]" in "".join(images.split())
    chat = run_cli("run", "generate-images", "--serving", "openai-chat", "--help", check=True).stdout
    chat = "".join(chat.split())  # help text wraps at 80 columns
    assert "[default:gemini-2.5-flash-image-preview]" in chat and "gpt-image-1" not in chat, "its own default"
    bare = run_cli("run", "generate-images", "--help", check=True).stdout
    assert "--model " not in bare and "--servingNAME--help" in "".join(bare.split())
    assert len(bare.splitlines()) < 40


def test_options_around_a_pipeline_file_and_set_overrides(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(5)])
    (tmp_path / "p.yaml").write_text(
        "input: in.jsonl\nout: runs/a\nsteps:\n  - head: {n: 2}\n  - template: {template: 'x {prompt}'}\n")
    done = run_cli("run", "p.yaml", "--out", "runs/other", "-q", "--set", "head.n=3",
                   "--set", "2.template=y {prompt}", cwd=tmp_path, check=True)
    assert done.returncode == 0
    from pixmill import Run

    assert [r["prompt"] for r in Run(tmp_path / "runs" / "other").rows()] == ["y p0", "y p1", "y p2"]
    assert not (tmp_path / "runs" / "a").exists()
    bad = run_cli("run", "p.yaml", "--set", "head.nope=1", cwd=tmp_path)
    assert bad.returncode == 1 and "has no option 'nope'" in bad.stderr
    assert inp.exists()


def test_yaml_serving_options_can_be_pointed_elsewhere_from_the_command_line(tmp_path):
    from pixmill_testing.openai_server import FakeOpenAIServer

    example = Path(__file__).resolve().parents[1] / "example_data" / "api" / "t2i_openai.yaml"
    with FakeOpenAIServer() as server:
        done = run_cli("run", str(example), "-o", str(tmp_path / "run"), "-q",
                       "--set", f"generate-images.serving.base_url={server.url}",
                       "--set", "generate-images.serving.size=64x48", env={"OPENAI_API_KEY": "sk-test"})
        assert done.returncode == 0, done.stderr
        assert server.requests and all(r.body["size"] == "64x48" for r in server.requests)
