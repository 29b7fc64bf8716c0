"""`pixmill export --format hf|jsonl|parquet`: dataset folders that the real `datasets` library loads.

Runs are made by the real runner from the example inputs; the model steps are played by two small
operators (PNG painter, judge-shaped scorer) so the rows look exactly like a model pipeline's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pixmill import ConfigError, Failed, Operator, Option, Storage, get_operator
from pixmill.exporting import export_dataset
from pixmill.rows import prompt_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "core" / "src" / "pixmill" / "examples"


class PaintImages(Operator):
    """Stands in for generate-images / edit-images: PNGs in the run folder plus ``<key>_meta``."""

    name = "paint-images"
    options = (Option("output_key", str, "image"), Option("n", int, 1))

    def process(self, rows: list[dict], ctx: Any) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            prompt = prompt_text(row.get("conversations"))
            if "FAIL" in prompt:
                out.append(Failed("refused"))
                continue
            paths, metas = [], []
            for i in range(self.config["n"]):
                absolute, relative = ctx.image_path(row["id"], i)
                absolute.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40 + i, 32), tuple(hashlib.sha1(f"{row['id']}{i}".encode()).digest()[:3])).save(absolute)
                paths.append(relative)
                metas.append({"serving": "paint", "model": "test/paint-v1", "seed": ctx.seed_for(row["id"], i)})
            many = self.config["n"] > 1
            out.append({**row, self.config["output_key"]: paths if many else paths[0],
                        self.config["output_key"] + "_meta": metas if many else metas[0]})
        return out


class ScoreRows(Operator):
    """Judge-shaped scores: overall, a sub-score, a rationale."""

    name = "score-rows"

    def process(self, rows: list[dict], ctx: Any) -> list[Any]:
        return [{**r, "scores": {"overall": float(int(r["id"].split("/")[0]) % 10), "quality": 5.0,
                                 "rationale": "ok"}} for r in rows]


def make_run(tmp_path: Path, example: str, input_file: str, out_key: str = "image", n: int = 1,
             where: str | None = None) -> Path:
    out = tmp_path / f"run-{example}"
    with Storage(input=EXAMPLES / example / input_file, out=out) as st:
        PaintImages(output_key=out_key, n=n).run(st.step())
        ScoreRows().run(st.step())
        if where:
            get_operator("filter")(where=where).run(st.step())
    return out


def many_prompts_run(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps({"conversations": [{"role": "user", "content": f"p{i}" + (" FAIL" if i == 3 else "")}]})
                           + "\n" for i in range(n)), encoding="utf-8")
    out = tmp_path / "run-many"
    with Storage(input=src, out=out) as st:
        PaintImages().run(st.step())
        ScoreRows().run(st.step())
        get_operator("filter")(where="scores.overall >= 2").run(st.step())
    return out


@pytest.fixture(scope="module")
def datasets():
    try:
        import datasets
    except ImportError:
        pytest.fail("the `datasets` library is missing: pip install -r requirements-dev.txt")
    return datasets


def load(datasets, tmp_path: Path, *args: Any, **kw: Any):
    return datasets.load_dataset(*args, cache_dir=str(tmp_path / "hf-cache"), **kw)


# -- hf -----------------------------------------------------------------------------------------
def test_hf_export_loads_as_pil_images_with_datasets(tmp_path: Path, datasets) -> None:
    run = make_run(tmp_path, "edit", "edits.jsonl", out_key="edited_image")
    result = export_dataset(run, tmp_path / "ds", "hf")
    assert result.rows == 3 and result.images == 6 and result.image_columns == {"images": True, "edited_image": False}
    shard = tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"
    assert result.files == [shard]

    ds = load(datasets, tmp_path, "parquet", data_files=str(shard))["train"]
    row = ds[0]
    from PIL.Image import Image as PILImage

    assert isinstance(row["edited_image"], PILImage) and row["edited_image"].size == (40, 32)
    assert isinstance(row["images"], list) and isinstance(row["images"][0], PILImage)
    source = Image.open(EXAMPLES / "edit" / "images" / "red_circle.png")
    assert row["images"][0].size == source.size and row["images"][0].tobytes() == source.tobytes()
    assert row["conversations"][0]["content"] == "Change the circle to a bright yellow color."
    assert row["scores"]["overall"] == 0.0 and row["edited_image_meta"]["model"] == "test/paint-v1"

    by_folder = load(datasets, tmp_path, str(tmp_path / "ds"))["train"]
    assert by_folder.num_rows == 3 and isinstance(by_folder[2]["edited_image"], PILImage)
    assert str(by_folder.features["images"]).startswith("List(Image(")


def test_hf_card_lists_columns_models_parameters_counts_and_scores(tmp_path: Path) -> None:
    run = many_prompts_run(tmp_path, 12)
    export_dataset(run, tmp_path / "ds", "hf")
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    header = card.split("---")[1]
    assert "path: data/*.parquet" in header and "split: train" in header
    assert "| `image` | image |" in card and "| `conversations` | list |" in card
    assert "| `image_meta` | paint | test/paint-v1 | 7 |" in card  # models from the rows' provenance
    assert "where: scores.overall >= 2" in card  # generation parameters
    assert "| 01-paint-images | 11 | 1 | 0 | 11 |" in card and "| 03-filter | 11 | 0 | 4 | 7 |" in card
    assert "`scores.overall` over 7 rows: mean 5.86" in card and "Sub-score means: quality 5.00" in card
    info = json.loads((tmp_path / "ds" / "export.json").read_text())
    assert info["rows"] == 7 and info["format"] == "hf"
    assert (tmp_path / "ds" / "pipeline.yaml").is_file() or not (run / "pipeline.yaml").exists()


def test_hf_shards_by_rows_and_all_rows_load(tmp_path: Path, datasets) -> None:
    run = many_prompts_run(tmp_path, 12)
    result = export_dataset(run, tmp_path / "ds", "hf", shard_rows=4)
    names = sorted(p.name for p in (tmp_path / "ds" / "data").iterdir())
    assert names == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert [f.name for f in result.files] == names
    ds = load(datasets, tmp_path, str(tmp_path / "ds"))["train"]
    assert sorted(ds["id"], key=int) == ["2", "4", "5", "6", "7", "8", "9"]  # 3 failed, 0 1 10 11 filtered out
    assert all(img.size == (40, 32) for img in ds["image"])


def test_multi_image_lists_and_size_shards(tmp_path: Path, datasets) -> None:
    run = make_run(tmp_path, "multi_image", "multi.jsonl", out_key="composed", n=2)
    export_dataset(run, tmp_path / "ds", "hf", max_shard_bytes=1)  # every row over budget: one row per shard
    assert len(list((tmp_path / "ds" / "data").glob("train-*-of-00002.parquet"))) == 2
    ds = load(datasets, tmp_path, "parquet", data_files=str(tmp_path / "ds" / "data" / "*.parquet"))["train"]
    assert [len(r["images"]) for r in ds] == [2, 2] and [[i.size for i in r["composed"]] for r in ds] == [[(40, 32), (41, 32)]] * 2


# -- jsonl / parquet: portable folders -----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_folder_is_portable_with_images_copied_and_paths_relative(tmp_path: Path, fmt: str) -> None:
    run = make_run(tmp_path, "evaluation", "eval.jsonl", out_key="judged_image")
    export_dataset(run, tmp_path / "ds", fmt)
    moved = tmp_path / "elsewhere" / "ds"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "ds"), moved)
    shutil.rmtree(run)  # nothing may point back into the run
    if fmt == "jsonl":
        rows = [json.loads(line) for line in (moved / "train.jsonl").read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(moved / "train.parquet").to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["image"].startswith("images/input/") and row["judged_image"].startswith("images/")
        for key in ("image", "judged_image"):
            assert not Path(row[key]).is_absolute() and Image.open(moved / row[key]).size[0] > 0
    src = EXAMPLES / "evaluation" / rows[0]["image"].removeprefix("images/input/")
    assert (moved / rows[0]["image"]).read_bytes() == src.read_bytes()
    assert "image path" in (moved / "README.md").read_text()


def test_reexport_replaces_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, "edit", "edits.jsonl", out_key="edited_image")
    target = tmp_path / "ds"
    export_dataset(run, target, "jsonl")
    (target / "images" / "stale.png").write_bytes(b"x")
    export_dataset(run, target, "hf")
    assert not (target / "images").exists() and (target / "data").is_dir()
    assert not list(tmp_path.glob(".ds.*"))  # no staging folder left behind
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        export_dataset(run, other, "hf")
    assert (other / "notes.txt").read_text() == "keep me"


def test_missing_image_is_exported_as_null_and_reported(tmp_path: Path, datasets) -> None:
    run = make_run(tmp_path, "edit", "edits.jsonl", out_key="edited_image")
    victim = sorted((run / "01-paint-images" / "images").glob("*.png"))[1]
    victim.unlink()
    result = export_dataset(run, tmp_path / "ds", "hf")
    assert result.missing == [("1", f"01-paint-images/images/{victim.name}")]
    ds = load(datasets, tmp_path, str(tmp_path / "ds"))["train"]
    assert ds[1]["edited_image"] is None and ds[0]["edited_image"] is not None


# -- CLI ----------------------------------------------------------------------------------------
def pixmill(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixmill", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_formats_and_the_old_single_file_export(tmp_path: Path) -> None:
    run = make_run(tmp_path, "edit", "edits.jsonl", out_key="edited_image")
    proc = pixmill("export", str(run), "--to", str(tmp_path / "ds"), "--format", "hf", "--max-shard-size", "1GB")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 3 rows, 6 images" in proc.stdout and "data/train-00000-of-00001.parquet" in proc.stdout
    old = pixmill("export", str(run), "--to", str(tmp_path / "rows.jsonl"))
    assert old.returncode == 0 and "wrote 3 rows" in old.stdout
    assert [json.loads(x)["edited_image"] for x in (tmp_path / "rows.jsonl").read_text().splitlines()][0].startswith("01-")
    no_fmt = pixmill("export", str(run), "--to", str(tmp_path / "dir"))
    assert no_fmt.returncode != 0 and "--format" in no_fmt.stderr
    no_parquet = pixmill("export", str(run), "--to", str(tmp_path / "x"), "--format", "hf",
                         env={"PIXMILL_LOAD_PLUGINS": ""})
    assert no_parquet.returncode == 1 and "pip install pixmill-parquet" in no_parquet.stderr


def test_parquet_store_keeps_file_metadata_when_the_schema_grows(tmp_path: Path) -> None:
    """The huggingface key must survive the store's schema merge (a later row group adds a column)."""
    import pyarrow.parquet as pq
    from pixmill_parquet.store import ParquetStore

    store = ParquetStore()
    store.row_group_size = 2
    rows = [{"id": "0", "a": 1}, {"id": "1", "a": 2}, {"id": "2", "a": 3, "b": "new"}]
    assert store.write_file(tmp_path / "x.parquet", iter(rows), metadata={"huggingface": '{"info": {}}'}) == 3
    meta = pq.read_schema(tmp_path / "x.parquet").metadata
    assert meta[b"huggingface"] == b'{"info": {}}' and b"pixmill" in meta
    assert list(store.read_part(tmp_path / "x.parquet")) == rows


@pytest.mark.parametrize("example", ["text2image", "evaluation", "prompts-basic"])
def test_every_example_pipeline_exports_and_loads(tmp_path: Path, datasets, example: str) -> None:
    if example == "prompts-basic":  # the model-free example, exactly as shipped
        from pixmill.pipeline import PipelineSpec, run_pipeline

        spec = PipelineSpec.from_yaml(EXAMPLES / "prompts-basic.yaml")
        spec.out = run = tmp_path / "run-basic"
        run_pipeline(spec)
    else:
        run = make_run(tmp_path, example, {"text2image": "prompts.jsonl", "evaluation": "eval.jsonl"}[example])
    result = export_dataset(run, tmp_path / "ds", "hf")
    ds = load(datasets, tmp_path, str(tmp_path / "ds"))["train"]
    assert ds.num_rows == result.rows == {"text2image": 8, "evaluation": 2, "prompts-basic": 5}[example]
    from PIL.Image import Image as PILImage

    for key in result.image_columns:
        assert all(isinstance(img, PILImage) for img in ds[key])
    if example == "prompts-basic":
        assert result.image_columns == {} and ds[0]["prompt"].endswith("highly detailed, natural light")
