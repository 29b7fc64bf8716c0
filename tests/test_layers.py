"""Import rules read from the code's own imports: no module reaches around a layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator

from helpers import REPO

CORE = REPO / "core" / "src" / "pixmill"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (relative imports resolved against the pixmill package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_runner_and_the_run_folder_import_no_plugin_and_not_the_registry():
    for name in ("runner.py", "run_folder.py"):
        mods = imported_modules(CORE / name)
        reached = sorted(m for m in mods if m.startswith(("pixmill.plugins", "pixmill.builtins", "pixmill_")))
        assert not reached, f"{name} reaches around its layer: {reached}"


def test_the_core_imports_no_plugin():
    for path in CORE.rglob("*.py"):
        mods = imported_modules(path)
        assert not [m for m in mods if m.startswith("pixmill_")], f"{path.relative_to(REPO)} imports a plugin"


def _sources(*skip: str) -> Iterator[Path]:
    for root in (REPO / "core", REPO / "plugins", REPO / "tests", REPO / "bench", REPO / "example_data"):
        for path in root.rglob("*.py"):
            if path.name not in skip and ".venv" not in path.parts:
                yield path


def test_only_the_run_folder_knows_part_files():
    offenders = []
    for path in _sources("run_folder.py", "store_contract.py", "test_layers.py"):
        text = path.read_text(encoding="utf-8")
        if 'glob("part-' in text or "glob('part-" in text or 'rglob("part-' in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"read parts through pixmill.Run instead: {offenders}"


# A glob for numbered step folders: "[0-9][0-9]-*", "01-*", f"{index:02d}-*".
STEP_FOLDER_GLOB = re.compile(r"""glob\(f?["'](\[0-9\]\[0-9\]|\d\d|\{[^}]*:02d\})-""")


def test_only_the_run_folder_finds_step_folders():
    offenders = []
    for path in _sources("run_folder.py", "test_layers.py"):
        name = path.relative_to(REPO).as_posix()
        if STEP_FOLDER_GLOB.search(path.read_text(encoding="utf-8")):
            offenders.append(name)
    assert not offenders, f"find steps through pixmill.Run (or RunFolder.step_dirs) instead: {offenders}"


def test_status_gallery_and_export_read_runs_through_the_run_reader():
    readers = [CORE / "exporting.py", CORE / "cli" / "export.py", CORE / "cli" / "status.py",
               *(CORE / "gallery").glob("*.py")]
    for path in readers:
        mods = imported_modules(path)
        assert "pixmill.run" in mods or path.name in ("__init__.py", "thumbs.py", "curation.py"), path
        assert not [m for m in mods if m.startswith("pixmill.run_folder")], f"{path.name} reads the folder itself"
    for path in (CORE / "exporting.py", CORE / "cli" / "export.py"):
        reached = [m for m in imported_modules(path) if m.startswith("pixmill.gallery")]
        assert not reached, f"{path.relative_to(REPO)} reads runs through the gallery: {reached}"


def test_the_core_distribution_ships_no_test_harness():
    from importlib.metadata import distribution

    core = distribution("pixmill")
    assert not [ep for ep in core.entry_points if ep.group == "pytest11"], "the pytest plugin belongs to pixmill-testing"
    importing_pytest = [str(p.relative_to(REPO)) for p in CORE.rglob("*.py") if "pytest" in imported_modules(p)]
    assert not importing_pytest and not (CORE / "testing").exists(), importing_pytest
    harness = distribution("pixmill-testing")
    assert [ep.value for ep in harness.entry_points if ep.group == "pytest11"] == ["pixmill_testing.pytest_plugin"]
    assert any(r.startswith("pixmill[http]") for r in harness.requires or [])
