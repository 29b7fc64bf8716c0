"""The pytest harness plugin authors get (entry point pytest11): a plugin registered for one test,
steps run through the real runner, rows read back in order."""

from __future__ import annotations

import types

from pixmill import Failed, Operator, Option, hookimpl
from pixmill.pipeline import StepSpec
from pixmill_testing import step_failures, step_rows


class Shout(Operator):
    """Upper-cases `text`."""

    name = "shout-test"
    options = (Option("suffix", str, "", "added at the end"),)

    def process(self, rows, ctx):
        return [{**r, "text": r["text"].upper() + self.config["suffix"]} if r.get("text") else Failed("no text")
                for r in rows]


@hookimpl
def register_operators(register):
    register(Shout)


def test_a_plugin_registered_for_one_test_runs_through_the_runner(pixmill_plugin, pixmill_run, make_png, tmp_path):
    plugin = types.ModuleType("shout_plugin")
    plugin.register_operators = register_operators
    pixmill_plugin(plugin)
    image = make_png(tmp_path / "a.png", color=(1, 2, 3))
    run = pixmill_run([{"text": "a", "images": [str(image)]}, {"text": "b"}], [("shout-test", {"suffix": "!"})])
    assert [r["text"] for r in run.rows] == ["A!", "B!"] and not run.failed
    assert run.image(run.by_id["0"]["images"][0]).getpixel((0, 0)) == (1, 2, 3)


def test_relative_pngs_step_specs_and_each_steps_rows_and_failures(pixmill_plugin, pixmill_run, make_png):
    plugin = types.ModuleType("shout_plugin")
    plugin.register_operators = register_operators
    pixmill_plugin(plugin)
    image = make_png("images/a.png", color=(4, 5, 6))
    assert image == "images/a.png"  # as a row names it: next to the input file
    run = pixmill_run([{"id": "a", "text": "x", "images": [image]}, {"id": "b"}],
                      [StepSpec("shout-test", {"suffix": "?"}), ("shout-test", {})], name="two")
    assert run.step_by_id(1)["a"]["text"] == "X?" and run.by_id["a"]["text"] == "X?"
    assert run.step_failed(1) == {"b": "no text"} == step_failures(run.out, 1)
    assert run.folder.name.startswith("02-") and [r["id"] for r in step_rows(run.out)] == ["a"]
    assert run.image(run.by_id["a"]["images"][0]).getpixel((0, 0)) == (4, 5, 6)


def test_the_fake_server_fixture_answers(fake_openai_server):
    import urllib.request

    with urllib.request.urlopen(fake_openai_server.url + "/models") as answer:
        assert answer.status == 200
