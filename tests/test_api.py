"""The Python API has the DataFlow-MM shape and shares the runner with the CLI."""

from __future__ import annotations

from helpers import read_jsonl, run_cli
from pixmill import FileStorage, Storage, get_operator


def test_storage_api_equals_the_cli(tmp_path, prompts_file):
    Template, Filter, Head = get_operator("template"), get_operator("filter"), get_operator("head")
    with Storage(input=prompts_file, out=tmp_path / "api") as storage:
        Template(template="a photo of {conversations}").run(storage.step(), output_key="prompt")
        Filter(where="n % 2 == 0").run(storage.step())
        result = Head(n=10).run(storage.step())
        rows = storage.read()
    assert result.rows == 10 and len(rows) == 10
    run_cli("run", "-q", "-i", str(prompts_file), "-o", str(tmp_path / "cli"), "template", "--template",
            "a photo of {conversations}", "--output-key", "prompt", "filter", "--where", "n % 2 == 0",
            "head", "--n", "10", check=True)
    run_cli("export", str(tmp_path / "cli"), "--to", str(tmp_path / "cli.jsonl"), check=True)
    assert rows == read_jsonl(tmp_path / "cli.jsonl")
    # The API run is a normal run folder: the CLI reads it, and rerunning through the API is cached.
    assert "03-head" in run_cli("status", str(tmp_path / "api"), check=True).stdout
    with Storage(input=prompts_file, out=tmp_path / "api") as storage:
        again = Template(template="a photo of {conversations}", output_key="prompt").run(storage.step())
    assert again.cached


def test_dataflow_mm_file_storage_signature(tmp_path, prompts_file):
    storage = FileStorage(first_entry_file_name=str(prompts_file), cache_path=str(tmp_path / "cache"),
                          file_name_prefix="dataflow_cache_step", cache_type="jsonl")
    get_operator("head")(n=3).run(storage=storage.step())
    assert [r["id"] for r in storage.rows()] == ["0", "1", "2"]
    storage.close()
