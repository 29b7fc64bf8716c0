"""The gallery shows curation figures and flags, filters and sorts by a figure's range, and finds
flags with the search box: a run of image-stats, dedupe-images and check-prompts over real files."""

from __future__ import annotations

from pathlib import Path

from helpers import write_jsonl
from PIL import ImageFilter
from pixmill.gallery import write_gallery
from pixmill.pipeline import PipelineSpec, StepSpec, run_pipeline
from pixmill_safety.samples import near_copies, scene
from test_gallery import browser, card_ids, open_gallery, page  # noqa: F401 - fixtures


def curated_run(tmp_path: Path) -> Path:
    rows = []
    for i in range(6):
        img = scene(i, side=128)
        (img.filter(ImageFilter.GaussianBlur(3)) if i % 2 else img).save(tmp_path / f"s{i}.png")
        rows.append({"id": f"s{i}", "prompt": "a gory scene" if i == 5 else f"scene {i}", "images": [f"s{i}.png"]})
    copy = near_copies(scene(0, side=128), tmp_path, "s0")["jpeg70"]
    rows.append({"id": "copy", "prompt": "scene 0 again", "images": [copy]})
    steps = [StepSpec("check-prompts", {}), StepSpec("image-stats", {}), StepSpec("dedupe-images", {"drop": True})]
    run_pipeline(PipelineSpec(steps=steps, input=write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "run"))
    return tmp_path / "run"


def test_figures_and_flags_are_shown_filtered_and_sorted(tmp_path: Path, page) -> None:  # noqa: F811
    html = write_gallery(curated_run(tmp_path)).path
    open_gallery(page, html)
    copy = page.locator("#cards .card[data-id='copy']")
    assert "duplicate of s0" in copy.locator(".curation").inner_text()
    assert copy.get_attribute("data-status") == "filtered"
    blur = page.eval_on_selector_all("#cards .card .fig[data-figure='blur']", "els => els.length")
    assert blur == 7  # every row, the dropped copy included, shows its blur figure

    def rendered_after(action) -> None:
        before = page.evaluate("document.body.dataset.rendered")
        action()
        page.wait_for_function(f"document.body.dataset.rendered !== '{before}'")

    rendered_after(lambda: page.select_option("#fig", "blur"))
    rendered_after(lambda: page.select_option("#sort", "fig-asc"))
    values = page.eval_on_selector_all(
        "#cards .card", "els => els.map(e => parseFloat(e.querySelector(\".fig[data-figure='blur']\").textContent.split(' ')[1]))")
    assert values == sorted(values) and len(values) == 7
    threshold = (values[2] + values[3]) / 2
    rendered_after(lambda: page.fill("#fig-min", str(threshold)))
    assert len(card_ids(page)) == 4  # only the sharper images are left
    rendered_after(lambda: page.fill("#fig-min", ""))
    rendered_after(lambda: page.fill("#search", "prompt flagged"))
    assert card_ids(page) == ["s5"]
    assert "fig=blur" in page.evaluate("location.hash")
