"""The roots rule: export and the gallery read only files under the run folder, the input folder
or a folder the user allowed; symlinks are resolved first; a non-image is never copied."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli, write_jsonl
from PIL import Image
from pixmill.context import StepContext
from pixmill.file_roots import OutsideRoots

SECRET = b"root:x:0:0:SECRET-LINE-THAT-MUST-NOT-LEAK\n"


@pytest.fixture
def hostile_run(tmp_path: Path) -> dict:
    """A run whose input names: a good image, a symlink to a secret file, an absolute path and a
    ../ path to an image outside the input folder, and a non-image named .png."""
    data = tmp_path / "data"
    (data / "imgs").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_bytes(SECRET)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(data / "imgs" / "good.png")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(outside / "private.png")
    os.symlink(secret, data / "imgs" / "x.png")
    (data / "imgs" / "notes.png").write_bytes(SECRET)
    rows = [{"id": "good", "image": "imgs/good.png"}, {"id": "link", "image": "imgs/x.png"},
            {"id": "abs", "image": str(outside / "private.png")}, {"id": "dotdot", "image": "../elsewhere/private.png"},
            {"id": "fake", "image": "imgs/notes.png"}]
    inp = write_jsonl(data / "in.jsonl", rows)
    run = tmp_path / "run"
    run_cli("run", "-q", "-i", str(inp), "-o", str(run), "head", "--n", "10", check=True, cwd=tmp_path)
    return {"run": run, "outside": outside, "tmp": tmp_path}


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", ["jsonl", "hf"])
def test_export_takes_only_allowed_image_files(hostile_run, fmt):
    out = hostile_run["tmp"] / "export"
    proc = run_cli("export", str(hostile_run["run"]), "--to", str(out), "--format", fmt, cwd=hostile_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    assert b"SECRET-LINE" not in _all_bytes(out)
    private = (hostile_run["outside"] / "private.png").read_bytes()
    assert private not in _all_bytes(out)
    info = json.loads((out / "export.json").read_text())
    assert (info["images"], info["refused_images"]) == (1, 4)
    assert "4 files refused" in proc.stderr and "--allow-root" in proc.stderr
    assert "4 files were refused" in (out / "README.md").read_text()


def test_allow_root_widens_the_rule_but_symlinks_and_non_images_stay_refused(hostile_run):
    out = hostile_run["tmp"] / "export"
    proc = run_cli("export", str(hostile_run["run"]), "--to", str(out), "--format", "jsonl",
                   "--allow-root", str(hostile_run["outside"]), cwd=hostile_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "export.json").read_text())
    # The outside image (absolute and ../) is now exported; the secret (a symlink target that is
    # not an image, and a non-image named .png) never is.
    assert (info["images"], info["refused_images"]) == (3, 2)
    assert b"SECRET-LINE" not in _all_bytes(out)


def _gallery_data(page: Path) -> dict:
    html = page.read_text()
    return json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])


def test_gallery_neither_links_nor_thumbnails_refused_files(hostile_run):
    page = hostile_run["tmp"] / "g" / "gallery.html"
    proc = run_cli("gallery", str(hostile_run["run"]), "-o", str(page), cwd=hostile_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    assert len(list((page.parent / "gallery_files").glob("*"))) == 1  # only the good image got a thumbnail
    images = [im for r in _gallery_data(page)["rows"] for g in r["g"] for im in g["i"]]
    assert [im["f"] for im in images if im.get("t")] == ["../data/imgs/good.png"]
    refused = [im for im in images if "why" in im]
    assert len(refused) == 4
    assert sum("--allow-root" in im["why"] for im in refused) == 3
    assert "'imgs/notes.png' is not an image" in refused[-1]["why"]


def test_gallery_links_are_relative_file_urls_whatever_the_file_name(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    names = ["javascript:alert(1).png", "https:evil.png", "#top.png", "a b?.png"]
    for name in names:
        Image.new("RGB", (8, 8), (1, 2, 3)).save(data / name, format="PNG")
    inp = write_jsonl(data / "in.jsonl", [{"id": str(i), "image": n} for i, n in enumerate(names)])
    run_cli("run", "-q", "-i", str(inp), "-o", str(tmp_path / "run"), "head", "--n", "9", check=True)
    page = data / "gallery.html"
    run_cli("gallery", str(tmp_path / "run"), "-o", str(page), check=True)
    links = [im["f"] for r in _gallery_data(page)["rows"] for g in r["g"] for im in g["i"]]
    assert sorted(links) == sorted(["./javascript%3Aalert%281%29.png", "./https%3Aevil.png", "./%23top.png",
                                    "./a%20b%3F.png"])


def test_operators_read_only_allowed_files(tmp_path):
    run, data, outside = tmp_path / "run", tmp_path / "data", tmp_path / "elsewhere"
    for folder in (run, data, outside):
        folder.mkdir()
    (outside / "a.png").write_bytes(b"x")
    os.symlink(outside / "a.png", data / "link.png")
    ctx = StepContext(run_dir=run, step_dir=run / "01-x", input_dir=data)
    for named in ("link.png", str(outside / "a.png"), "../elsewhere/a.png"):
        with pytest.raises(OutsideRoots, match="--allow-root"):
            ctx.readable(named)
    allowed = StepContext(run_dir=run, step_dir=run / "01-x", input_dir=data, allowed_roots=(str(outside),))
    assert allowed.readable("link.png") == (outside / "a.png").resolve()


def test_one_image_opener_one_error_naming_row_field_file_and_fix(tmp_path):
    from pixmill.errors import RowError
    from pixmill.image_files import ImageError, ImageFile, open_row_image

    run, data, outside = tmp_path / "run", tmp_path / "data", tmp_path / "elsewhere"
    for folder in (run, data, outside):
        folder.mkdir()
    Image.new("RGB", (8, 6), "red").save(data / "ok.png")
    (data / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (4, 4)).save(outside / "far.png")
    ctx = StepContext(run_dir=run, step_dir=run / "01-x", input_dir=data)
    row = {"id": "r7", "images": ["ok.png"]}
    assert open_row_image(ctx, "ok.png", "images", row=row, mode="L").mode == "L"
    as_file = open_row_image(ctx, "ok.png", "images", row=row, as_file=True)
    assert isinstance(as_file, ImageFile) and as_file.size == (8, 6)
    assert open_row_image(ctx, "ok.png", "images", read=lambda p: p.stat().st_size) > 0
    cases = {"missing.png": "not found", "broken.png": "cannot be read", str(outside / "far.png"): "--allow-root"}
    for named, what in cases.items():
        with pytest.raises(ImageError) as err:
            open_row_image(ctx, named, "images", row=row)
        message = str(err.value)
        assert isinstance(err.value, RowError) and isinstance(err.value, ValueError)
        assert message.startswith("row r7: ") and "'images'" in message and what in message
        assert "\n" not in message and (named in message or "far.png" in message)
