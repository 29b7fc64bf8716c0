"""The versions of pixmill and its plugins, compared between the driver and every node."""

from __future__ import annotations

from importlib import metadata

from pixmill.errors import PixmillError


def installed_versions() -> dict[str, str]:
    """{distribution: version} for pixmill and every installed pixmill plugin."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name == "pixmill" or any(ep.group == "pixmill" for ep in dist.entry_points):
            out[name] = dist.version
    return dict(sorted(out.items()))


def check_versions(driver: dict[str, str], node: dict[str, str], where: str) -> None:
    """Raise when ``node`` runs another pixmill, or lacks or differs in a plugin the driver has."""
    diffs = [f"{name} {version} here, {node.get(name, 'missing')} there"
             for name, version in driver.items() if node.get(name) != version]
    if diffs:
        raise PixmillError(f"{where} runs other pixmill versions than this machine: {'; '.join(diffs)}",
                           "install the same pixmill and plugin versions on every node (or ship them with "
                           "the executor's runtime_env option)")
