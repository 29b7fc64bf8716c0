"""Parquet inputs: columns JSON cannot hold are refused before any work, naming the column and the
fix; what converts faithfully is converted and said; pixmill's own hf export reads back as input."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from helpers import run_cli, step_rows, write_jsonl

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.mark.parametrize("column,values,kind", [
    ("price", pa.array([decimal.Decimal("1.10"), decimal.Decimal("2.25")], pa.decimal128(10, 2)), "decimal"),
    ("wait", pa.array([dt.timedelta(seconds=3), dt.timedelta(minutes=1)]), "duration"),
    ("blob", pa.array([b"\x00\x01", b"\x02"]), "binary"),
])
def test_columns_without_a_json_form_are_refused_before_any_work(tmp_path, column, values, kind):
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], column: values}), inp)
    out = tmp_path / "run"
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(out), "template", "--template", "{text}", "--output-key", "t")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"column {column!r}" in lines[0] and str(inp) in lines[0]
    assert "--store parquet" in lines[0] and "cast the column" in lines[0]
    assert not (out / "manifest.json").exists()  # nothing was copied or run
    # With Parquet step files the column is kept as it is.
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "pq"), "--store", "parquet",
                   "template", "--template", "{text}", "--output-key", "t")
    assert proc.returncode == 0, proc.stderr


def test_timestamps_and_nan_are_converted_and_said(tmp_path):
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "when": [dt.datetime(2026, 1, 2, 3, 4, 5), None],
                             "score": [float("nan"), 1.5]}), inp)
    proc = run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "2")
    assert proc.returncode == 0, proc.stderr
    assert "column 'when' (timestamp[us]) is written as ISO 8601 text" in proc.stderr
    assert "column 'score': 1 NaN or infinite values" in proc.stderr
    rows = step_rows(tmp_path / "run", 1)
    assert [r["when"] for r in rows] == ["2026-01-02T03:04:05", None]
    assert [r["score"] for r in rows] == [None, 1.5]


def test_an_hf_export_is_a_valid_input_with_its_images(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, c in enumerate(colors):
        Image.new("RGB", (8, 8), c).save(data / f"{i}.png")
    inp = write_jsonl(data / "in.jsonl", [{"prompt": f"p{i}", "image": f"{i}.png"} for i in range(3)])
    run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "3", check=True)
    run_cli("export", str(tmp_path / "run"), "--to", str(tmp_path / "ds"), "--format", "hf", check=True)
    shard = next((tmp_path / "ds" / "data").glob("*.parquet"))

    out = tmp_path / "again"
    proc = run_cli("run", "-q", "-i", str(shard), "-o", str(out), "head", "--n", "3")
    assert proc.returncode == 0, proc.stderr
    rows = step_rows(out, 1)
    assert [r["prompt"] for r in rows] == ["p0", "p1", "p2"]
    for row, color in zip(rows, colors, strict=True):
        with Image.open(out / row["image"]) as img:
            assert img.convert("RGB").getpixel((0, 0)) == color
    # ... and exports again, images included.
    run_cli("export", str(out), "--to", str(tmp_path / "ds2"), "--format", "jsonl", check=True)
    info = json.loads((tmp_path / "ds2" / "export.json").read_text())
    assert info["images"] == 3
