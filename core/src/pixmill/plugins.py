"""Plugin discovery: entry points in the ``pixmill`` group, loaded one by one into a Registry.

A broken plugin produces one warning naming its distribution and the fix; everything else keeps
working. ``PIXMILL_LOAD_PLUGINS`` (comma list of entry-point or distribution names; empty = none)
limits what loads; the core's own entry point always loads. ``PIXMILL_STRICT_PLUGINS=1`` turns
load warnings into errors, for plugin authors. ``PIXMILL_TRACE_PLUGINS=1`` prints every hook call
(pluggy's tracing) to stderr. ``PIXMILL_PLUGINS_DIR`` (folders separated by ``:``; the CLI's
``--plugins-dir``) loads each ``*.py`` file there as a one-file plugin, for one-off operators that
need no package.

Hooks are called through pluggy's plugin manager (so hook ordering, tracing, monitoring and
argument subsets work as pluggy documents), one plugin at a time, in pluggy's call order, so that
every registration is attributed to the distribution that made it. Two distributions registering
one name is an error raised when that name is used; everything else keeps working.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError

log = logging.getLogger("pixmill.plugins")

GROUP = "pixmill"
CORE_DIST = "pixmill"
KINDS = ("servings", "operators", "stores", "executors")


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``pixmill plugins`` shows it."""

    name: str
    distribution: str
    version: str
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "registered": {k: v for k, v in self.registered.items() if v},
            "error": self.error,
        }


class Registry:
    """Every registered class by kind and name, and which plugin registered it."""

    def __init__(self) -> None:
        self.plugins: list[PluginInfo] = []
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._tracing = os.environ.get("PIXMILL_TRACE_PLUGINS", "") not in ("", "0")
        if self._tracing:
            self.pm.trace.root.setwriter(lambda text: sys.stderr.write(f"pixmill plugins: {text}"))
            self.pm.enable_tracing()
        self._items: dict[str, dict[str, tuple[type, PluginInfo]]] = {k: {} for k in KINDS}
        self._conflicts: dict[tuple[str, str], str] = {}  # (kind, name) -> why it cannot be used

    # -- loading ----------------------------------------------------------------------------
    def add_plugin(self, module: Any, info: PluginInfo, strict: bool = False) -> None:
        """Register one plugin module (or object with hookimpls) and collect what it registers."""
        self.plugins.append(info)
        try:
            self.pm.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001
            self._fail(info, exc, strict)
            return
        for kind in KINDS:
            try:
                self._call(f"register_{kind}", info.name, register=self._registrar(kind, info))
            except Exception as exc:  # noqa: BLE001
                self._fail(info, exc, strict)
                return

    def _call(self, hook_name: str, plugin_name: str, **kwargs: Any) -> None:
        """Call one plugin's implementations of a hook through pluggy (a subset hook caller)."""
        if self._tracing:
            sys.stderr.write(f"pixmill plugins: {hook_name} of plugin {plugin_name}\n")
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
        self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

    def _registrar(self, kind: str, info: PluginInfo) -> Callable[[type], None]:
        def register(cls: type) -> None:
            name = getattr(cls, "name", "")
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {info.distribution}: {cls!r} has no `name`", "set a class attribute `name`")
            existing = self._items[kind].get(name)
            if existing is not None and existing[0] is not cls:
                self._conflicts[(kind, name)] = (f"{kind[:-1]} {name!r} is registered by both "
                                                 f"{existing[1].distribution} and {info.distribution}")
                return
            self._items[kind][name] = (cls, info)
            info.registered[kind].append(name)

        return register

    def _fail(self, info: PluginInfo, exc: BaseException, strict: bool) -> None:
        info.error = f"{type(exc).__name__}: {exc}"
        self._unregister(info)
        if strict:
            raise PluginError(f"plugin {info.distribution} failed to load: {info.error}") from exc
        log.warning(
            "plugin %s (%s) failed to load: %s; fix or reinstall it (pip install -U %s), or leave it out "
            "with PIXMILL_LOAD_PLUGINS=<the plugins you want>",
            info.name, info.distribution, info.error, info.distribution,
        )

    def _unregister(self, info: PluginInfo) -> None:
        for kind in KINDS:
            for name in info.registered[kind]:
                self._items[kind].pop(name, None)
            info.registered[kind] = []
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    # -- lookups ------------------------------------------------------------------------------
    @property
    def conflicts(self) -> list[str]:
        """Names two distributions registered (each unusable until one of them goes)."""
        return list(self._conflicts.values())

    def check_conflicts(self, kind: str | None = None, name: str | None = None) -> None:
        """Raise for a conflict on ``kind``/``name`` (or on any name, without them)."""
        found = self._conflicts.get((kind, name)) if kind else next(iter(self._conflicts.values()), None)
        if found:
            raise PluginError(found, "uninstall one of the two distributions, or limit "
                              "PIXMILL_LOAD_PLUGINS to one of them")

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def classes(self, kind: str) -> dict[str, type]:
        return {name: cls for name, (cls, _info) in sorted(self._items[kind].items())}

    def get(self, kind: str, name: str) -> type:
        """The class registered under ``name``, or a ConfigError listing what exists."""
        self.check_conflicts(kind, name)
        found = self._items[kind].get(name)
        if found is not None:
            return found[0]
        singular = kind[:-1]
        broken = [p for p in self.plugins if p.error]
        hint = f"available: {', '.join(self.names(kind)) or 'none'}"
        if broken:
            errs = "; ".join(f"plugin {p.distribution} failed to load: {p.error}" for p in broken)
            hint += f"; {errs}"
        raise ConfigError(f"unknown {singular} {name!r}", hint)

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        found = self._items[kind].get(name)
        return found[1] if found else None

    def get_serving(self, name: str) -> type:
        return self.get("servings", name)

    def get_operator(self, name: str) -> type:
        return self.get("operators", name)

    def get_store(self, name: str) -> type:
        return self.get("stores", name)

    def get_executor(self, name: str) -> type:
        return self.get("executors", name)

    def store_for_suffix(self, suffix: str) -> type | None:
        for cls in self.classes("stores").values():
            if cls.suffix == suffix:
                return cls
        return None

    def commands(self, cli: Any) -> None:
        """Let every plugin add CLI commands; a failing plugin is reported, not fatal."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):  # pluggy's call order
            try:
                self._call("register_commands", impl.plugin_name, cli=cli)
            except Exception as exc:  # noqa: BLE001
                info = next((p for p in self.plugins if p.name == impl.plugin_name), None)
                log.warning("plugin %s could not add its commands: %s", info.distribution if info else impl.plugin_name, exc)


def _allowed(ep: EntryPoint, dist: str) -> bool:
    if dist == CORE_DIST:
        return True
    env = os.environ.get("PIXMILL_LOAD_PLUGINS")
    if env is None:
        return True
    wanted = {w.strip() for w in env.split(",") if w.strip()}
    return ep.name in wanted or dist in wanted


def load_registry(strict: bool | None = None) -> Registry:
    """Discover and load every installed plugin (see the module docstring)."""
    if strict is None:
        strict = os.environ.get("PIXMILL_STRICT_PLUGINS", "") not in ("", "0", "false")
    registry = Registry()
    eps = sorted(entry_points(group=GROUP), key=lambda e: (e.dist.name != CORE_DIST if e.dist else True, e.name))
    for ep in eps:
        dist = ep.dist.name if ep.dist else ep.name
        version = ep.dist.version if ep.dist else "?"
        if not _allowed(ep, dist):
            continue
        info = PluginInfo(name=ep.name, distribution=dist, version=version)
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break pixmill
            registry.plugins.append(info)
            registry._fail(info, exc, strict)
            continue
        registry.add_plugin(module, info, strict=strict)
    for path in plugin_files():
        _load_file_plugin(registry, path, strict)
    if strict:
        registry.check_conflicts()
    return registry


def plugin_files() -> list[Path]:
    """The one-file plugins named by ``PIXMILL_PLUGINS_DIR``, in order."""
    folders = [Path(p) for p in os.environ.get("PIXMILL_PLUGINS_DIR", "").split(os.pathsep) if p.strip()]
    return [f for folder in folders for f in sorted(folder.glob("*.py")) if not f.name.startswith("_")]


def _load_file_plugin(registry: Registry, path: Path, strict: bool) -> None:
    # Imported by its file name from its folder (put on sys.path), so that worker processes, which
    # inherit sys.path, can unpickle the classes it defines.
    info = PluginInfo(name=path.stem, distribution=f"file {path}", version="local")
    try:
        folder = str(path.parent.resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module = importlib.import_module(path.stem)
    except Exception as exc:  # noqa: BLE001 - a broken file must not break pixmill
        registry.plugins.append(info)
        registry._fail(info, exc, strict)
        return
    registry.add_plugin(module, info, strict=strict)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded registry (tests that change PIXMILL_LOAD_PLUGINS call this)."""
    global _registry
    _registry = None
