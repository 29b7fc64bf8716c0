"""`pixmill gallery`: runs made by the real runner from the example inputs, shown in headless Chromium.

The model steps are played by two small operators defined here (they draw PNGs with PIL and score
rows from their ids), run through the real runner, so the run folders are exactly what a model
pipeline leaves: generated images with provenance, judge-shaped scores, failed rows with reasons,
rows dropped by the real `filter`. The page is then opened in Debian's chromium (installed by
`make test`; see the Makefile's `browser` target) and checked the way a user would look at it.
The screenshot is kept in .artifacts/gallery/.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pixmill import Failed, Operator, Option, Run, Storage, get_operator
from pixmill.gallery import write_gallery
from pixmill.pipeline import PipelineSpec, run_pipeline
from pixmill.rows import prompt_text
from pixmill_testing import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "core" / "src" / "pixmill" / "examples"
ARTIFACTS = ROOT / ".artifacts" / "gallery"
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


# -- stand-ins for the model steps, run by the real runner ----------------------------------------
class PaintImages(Operator):
    """Draws one PNG per row (or ``n``) like generate-images/edit-images write them, with the same
    ``<key>_meta`` provenance; fails rows whose prompt contains FAIL, like a refusing API."""

    name = "paint-images"
    options = (Option("input_key", str, "conversations"), Option("output_key", str, "image"),
               Option("n", int, 1), Option("size", int, 48))
    default_batch_size = 4

    def process(self, rows: list[dict], ctx: Any) -> list[Any]:
        key, n, size = self.config["output_key"], self.config["n"], self.config["size"]
        out: list[Any] = []
        for row in rows:
            prompt = prompt_text(row.get(self.config["input_key"]))
            if "FAIL" in prompt:
                out.append(Failed("the serving refused the prompt (content policy)"))
                continue
            paths, metas = [], []
            for i in range(n):
                absolute, relative = ctx.image_path(row["id"], i)
                absolute.parent.mkdir(parents=True, exist_ok=True)
                color = tuple(hashlib.sha1(f"{row['id']}/{i}".encode()).digest()[:3])
                Image.new("RGB", (size, size + 8 * i), color).save(absolute)
                paths.append(relative)
                metas.append({"serving": "paint", "model": "test/paint-v1", "seed": ctx.seed_for(row["id"], i),
                              "steps": 4, "guidance": 3.5, "prompt": prompt, "index": i})
            out.append({**row, key: paths if n > 1 else paths[0], key + "_meta": metas if n > 1 else metas[0]})
        return out


def score_of(row_id: str) -> float:
    return (int(hashlib.sha1(row_id.encode()).hexdigest(), 16) % 101) / 10


class ScoreRows(Operator):
    """Writes judge-shaped scores: overall, sub-scores, rationale, the judge's identity."""

    name = "score-rows"
    options = (Option("output_key", str, "scores"),)

    def process(self, rows: list[dict], ctx: Any) -> list[Any]:
        return [{**row, self.config["output_key"]: {
            "overall": score_of(row["id"]), "prompt_following": min(10.0, score_of(row["id"]) + 1),
            "quality": 5.0, "rationale": f"rationale for row {row['id']}",
            "judge": {"serving": "rules", "model": "test/judge-v1"}}} for row in rows]


def t2i_run(tmp_path: Path, n: int = 30) -> Path:
    """prompts -> paint (3 refused) -> score -> filter (drops low scores)."""
    prompts = [{"conversations": [{"role": "user", "content": f"prompt number {i}" + (" FAIL" if i % 10 == 3 else "")}]}
               for i in range(n)]
    prompts[5]["conversations"][0]["content"] = 'a </script><img src=x onerror="window.pwned=1"> tag'
    src = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    out = tmp_path / "run-t2i"
    with Storage(input=src, out=out) as st:
        PaintImages().run(st.step())
        ScoreRows().run(st.step())
        get_operator("filter")(where="scores.overall >= 3").run(st.step())
    return out


def example_run(tmp_path: Path, example: str, input_file: str, out_key: str, n: int = 1) -> Path:
    """An example input (its images included) -> paint (playing the example's model step) -> score."""
    out = tmp_path / f"run-{example}"
    with Storage(input=EXAMPLES / example / input_file, out=out) as st:
        PaintImages(output_key=out_key, n=n).run(st.step())
        ScoreRows().run(st.step())
    return out


def expected_statuses(run: Path) -> dict[str, str]:
    """What every row of the run is, from the run folder: the gallery must show exactly these."""
    steps = Run(run).steps
    status = {str(r["id"]): "ok" for r in steps[-1].rows()}
    for step in steps:
        for failure in step.failures():
            status[failure["id"]] = "failed"
    for step in steps[1:]:
        kept = {str(r["id"]) for r in step.rows()}
        for rid in step.state.done - kept:
            status[rid] = "filtered"
    return status


# -- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is not installed: run `make browser` (apt-get update && apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -r requirements-dev.txt")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                               args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = ctx.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.errors = errors
    yield p
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_gallery(page, html: Path, view: str = "") -> None:
    """Load the page afresh (``view``: a URL hash such as ``status=failed``)."""
    page.goto("about:blank")
    page.goto(html.resolve().as_uri() + ("#" + view if view else ""))
    page.wait_for_selector("body[data-rendered]")


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.id)")


def assert_images_load(page) -> int:
    """Scroll every thumbnail of the page into view (they load lazily) and check each decoded."""
    imgs = page.locator("#cards img")
    for i in range(imgs.count()):
        imgs.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('#cards img')].every(i => i.complete)", timeout=15000)
    broken = page.eval_on_selector_all("#cards img", "els => els.filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"images that did not load: {broken[:5]}"
    return imgs.count()


def visit_all_pages(page) -> tuple[list[str], int]:
    ids, images = [], 0
    while True:
        ids += card_ids(page)
        images += assert_images_load(page)
        if page.locator("#next").is_disabled():
            return ids, images
        before = page.evaluate("document.body.dataset.rendered")
        page.click("#next")
        page.wait_for_function(f"document.body.dataset.rendered !== '{before}'")


# -- tests ---------------------------------------------------------------------------------------
def test_every_row_is_shown_with_its_images_on_every_page(tmp_path: Path, page) -> None:
    run = t2i_run(tmp_path)
    result = write_gallery(run, page_size=10)
    expected = expected_statuses(run)
    assert set(expected.values()) == {"ok", "failed", "filtered"}
    assert result.counts == {k: list(expected.values()).count(k) for k in ("ok", "failed", "filtered")}

    open_gallery(page, result.path)
    page.select_option("#sort", "id-asc")
    page.wait_for_function("document.body.dataset.rendered === '2'")
    ids, images = visit_all_pages(page)
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    generated = [rid for rid, st in expected.items() if st != "failed"]
    assert images == len(generated)  # failed rows were refused before an image was made

    open_gallery(page, result.path, "status=failed")
    failed = page.locator("#cards .card")
    assert failed.count() == list(expected.values()).count("failed")
    assert "refused the prompt" in failed.first.locator(".reason").inner_text()
    assert "01-paint-images" in failed.first.locator(".where").inner_text()
    # A prompt holding HTML is shown as text: nothing it says runs or becomes an element.
    open_gallery(page, result.path, "q=onerror")
    assert "</script><img src=x" in page.locator("#cards .card .prompt").first.inner_text()
    assert page.evaluate("window.pwned") is None


def test_filter_sort_search_and_histogram(tmp_path: Path, page) -> None:
    run = t2i_run(tmp_path)
    html = write_gallery(run, page_size=200).path
    expected = expected_statuses(run)
    open_gallery(page, html)
    n_ok = list(expected.values()).count("ok")

    def rendered_after(action) -> None:
        before = page.evaluate("document.body.dataset.rendered")
        action()
        page.wait_for_function(f"document.body.dataset.rendered !== '{before}'")

    rendered_after(lambda: page.uncheck("#status-failed"))
    rendered_after(lambda: page.uncheck("#status-filtered"))
    statuses = page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.status)")
    assert statuses == ["ok"] * n_ok

    rendered_after(lambda: page.check("#status-filtered"))
    rendered_after(lambda: page.fill("#min-score", "7"))
    scores = [float(s) for s in page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.score)")]
    want = sorted((score_of(r) for r, st in expected.items() if st != "failed" and score_of(r) >= 7), reverse=True)
    assert scores == want  # default sort: score, high first

    rendered_after(lambda: page.select_option("#sort", "score-asc"))
    scores = [float(s) for s in page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.score)")]
    assert scores == sorted(want)

    rendered_after(lambda: page.fill("#min-score", ""))
    rendered_after(lambda: page.select_option("#sort", "id-desc"))
    ids = card_ids(page)
    assert ids == sorted((r for r, st in expected.items() if st != "failed"), key=int, reverse=True)

    rendered_after(lambda: page.fill("#search", "prompt number 2"))  # 2, 20..29
    assert sorted(card_ids(page), key=int) == [r for r in ("2", *map(str, range(20, 30))) if expected[r] != "failed"]

    # Histogram: ten bins whose heights follow the counts; a click sets the minimum score.
    heights = page.eval_on_selector_all("#hist .bin .all", "els => els.map(e => parseFloat(e.style.height))")
    assert len(heights) == 10 and max(heights) == 100
    rendered_after(lambda: page.fill("#search", ""))
    rendered_after(lambda: page.click("#hist .bin[data-bin='8']"))
    assert page.input_value("#min-score") == "8"
    assert all(float(s) >= 8 for s in page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.score)"))

    # Steps table: done / failed / filtered out per step; its failed count filters to those rows.
    cells = page.eval_on_selector_all("#steps tbody tr", "trs => trs.map(t => [...t.cells].map(c => c.innerText))")
    by_step = {c[0]: c for c in cells}
    assert by_step["01-paint-images"][3] == "3" and by_step["03-filter"][4] == str(list(expected.values()).count("filtered"))
    rendered_after(lambda: page.click("#steps tbody tr:nth-child(2) button.link"))
    assert set(page.eval_on_selector_all("#cards .card", "els => els.map(e => e.dataset.status)")) == {"failed"}

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    open_gallery(page, html)
    assert_images_load(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot = ARTIFACTS / "gallery-t2i.png"
    page.screenshot(path=str(shot), full_page=False)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("example,input_file,out_key,n,groups", [
    ("edit", "edits.jsonl", "edited_image", 1, [("images (input)", 1), ("edited_image", 1)]),
    ("multi_image", "multi.jsonl", "edited_image", 1, [("images (input) · 2", 2), ("edited_image", 1)]),
    ("evaluation", "eval.jsonl", "judged", 2, [("image (input)", 1), ("judged · 2", 2)]),
    ("text2image", "prompts.jsonl", "image", 1, [("image", 1)]),
])
def test_example_inputs_show_sources_and_results_side_by_side(tmp_path: Path, page, example: str, input_file: str,
                                                              out_key: str, n: int, groups: list) -> None:
    run = example_run(tmp_path, example, input_file, out_key, n)
    result = write_gallery(run, tmp_path / "site" / "index.html")
    assert (tmp_path / "site" / "index_files").is_dir()
    open_gallery(page, result.path)
    cards = page.locator("#cards .card")
    assert cards.count() == len(expected_statuses(run))
    first = cards.first
    captions = first.locator("figcaption").all_inner_texts()
    assert [(c, first.locator("figure").nth(i).locator("img").count()) for i, c in enumerate(captions)] == groups
    assert_images_load(page)
    # Full-size links point at the original files, relative to the HTML file.
    for href in page.eval_on_selector_all("#cards a", "els => els.map(a => a.getAttribute('href'))"):
        assert not href.startswith(("/", "file:")) and (result.path.parent / href).is_file(), href
    assert "test/paint-v1" in first.locator(".cap").last.inner_text()
    assert first.locator(".subs .sub").first.inner_text().startswith("prompt_following")


def test_model_free_example_pipeline(tmp_path: Path, page) -> None:
    """prompts-basic.yaml: no images; dedupe and head drop rows, which the page lists as filtered."""
    spec = PipelineSpec.from_yaml(EXAMPLES / "prompts-basic.yaml")
    spec.out = tmp_path / "run-basic"
    run_pipeline(spec)
    result = write_gallery(spec.out)
    assert result.image_columns == {}
    assert result.counts == {"ok": 5, "failed": 0, "filtered": 3}
    open_gallery(page, result.path, "status=filtered&sort=id-asc")
    reasons = page.locator("#cards .card .reason").all_inner_texts()
    assert any(r.startswith("dropped by dedupe") for r in reasons) and any(r.startswith("dropped by head") for r in reasons)
    assert page.locator("#hist-note").inner_text().startswith("no scores")


def test_thumbnails_are_cached_and_missing_images_are_named(tmp_path: Path) -> None:
    run = t2i_run(tmp_path, n=12)
    first = write_gallery(run)
    assert first.thumbs.made > 0 and first.thumbs.cached == 0
    second = write_gallery(run)
    assert second.thumbs.made == 0 and second.thumbs.cached == first.thumbs.made
    # A deleted image is shown as missing, with its path, and does not stop the page.
    victim = next((run / "01-paint-images" / "images").glob("*.png"))
    victim.unlink()
    html = write_gallery(run).path.read_text(encoding="utf-8")
    data = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    missing = [im for r in data["rows"] for g in r["g"] for im in g["i"] if im.get("miss")]
    assert [m["f"] for m in missing] == [f"01-paint-images/images/{victim.name}"]


def test_embed_puts_everything_in_one_file(tmp_path: Path) -> None:
    run = example_run(tmp_path, "edit", "edits.jsonl", "edited_image")
    result = write_gallery(run, tmp_path / "one.html", embed=True)
    html = result.path.read_text(encoding="utf-8")
    assert not (tmp_path / "one_files").exists()
    assert html.count("data:image/jpeg;base64,") == 6  # 3 rows x (source + edit)


def test_cli_writes_the_gallery(tmp_path: Path) -> None:
    run = t2i_run(tmp_path, n=12)
    out = tmp_path / "g" / "gallery.html"
    proc = subprocess.run([sys.executable, "-m", "pixmill", "gallery", str(run), "-o", str(out), "--page-size", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: 12 rows" in proc.stdout and "failed" in proc.stdout
    assert '"page_size":5' in out.read_text(encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "pixmill", "gallery", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and "not a pixmill run folder" in bad.stderr
