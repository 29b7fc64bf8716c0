"""API keys: a user-only key file outside every run folder, and the lookup order servings use.

Lookup order for a serving's key: an explicit ``--api-key`` > the stored key (``pixmill keys set
NAME``) > an environment variable (``OPENAI_API_KEY`` by default). The key file lives in
``$PIXMILL_HOME/keys.json`` when ``PIXMILL_HOME`` is set, else ``$XDG_CONFIG_HOME/pixmill/keys.json``
(``~/.config/pixmill/keys.json``); it is written with mode 0600 in a 0700 folder. Keys are never
written to run folders, manifests, logs or error messages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("pixmill.keys")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def keys_path() -> Path:
    """Where stored keys live (see the module docstring)."""
    home = os.environ.get("PIXMILL_HOME")
    if home:
        return Path(home).expanduser() / "keys.json"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "pixmill" / "keys.json"


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConfigError(f"key name {name!r} is not valid",
                          "use letters, digits, '.', '_' or '-' (e.g. openai, openrouter, gemini)")
    return name


def _load(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        raise ConfigError(f"key file {path} is not valid JSON",
                          "fix or delete it, then store keys again with `pixmill keys set NAME`") from None
    if not isinstance(data, dict):
        raise ConfigError(f"key file {path} must hold a JSON object", "delete it and store keys again")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and os.name == "posix":
        raise ConfigError(f"key file {path} can be read or changed by other users (mode {mode:o})",
                          f"run `chmod 600 {path}`, and replace the keys in it if others could read them")
    return {str(k): str(v) for k, v in data.items()}


def _save(path: Path, keys: dict[str, str]) -> None:
    # A folder pixmill creates is private; an existing one (PIXMILL_HOME=/shared) keeps its mode:
    # the key file's own 0600 is what protects the key, and other people's folders are not ours.
    if not path.parent.exists():
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700)
        if os.name == "posix":
            os.chmod(path.parent, 0o700)  # whatever the umask
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # Create the temp file with 0600 from the start, so the key is never readable by others, and
    # exclusively: in a shared folder a planted file or symlink under that name must not be used.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(keys, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def set_key(name: str, value: str) -> Path:
    """Store ``value`` under ``name``; returns the key file's path."""
    value = (value or "").strip()
    if not value:
        raise ConfigError(f"empty key for {name!r}", "paste the key when asked, or pipe it on stdin")
    path = keys_path()
    keys = _load(path)
    keys[_check_name(name)] = value
    _save(path, keys)
    return path


def get_key(name: str) -> str | None:
    """The stored key ``name``, or ``None``."""
    return _load(keys_path()).get(name) or None


def remove_key(name: str) -> bool:
    """Forget the stored key ``name``; ``False`` if there was none."""
    path = keys_path()
    keys = _load(path)
    if name not in keys:
        return False
    del keys[name]
    _save(path, keys)
    return True


def key_names() -> list[str]:
    """Names of the stored keys (never their values)."""
    return sorted(_load(keys_path()))


def resolve_key(explicit: str | None, name: str | None, env_var: str | None) -> tuple[str | None, str]:
    """The key to use and where it came from: ``(key, "option" | "stored:NAME" | "env:VAR" | "none")``."""
    if explicit:
        return explicit, "option"
    if name:
        stored = get_key(name)
        if stored:
            return stored, f"stored:{name}"
    if env_var:
        value = os.environ.get(env_var, "").strip()
        if value:
            return value, f"env:{env_var}"
    return None, "none"


def require_key(explicit: str | None, name: str | None, env_var: str | None, owner: str) -> str:
    """Like :func:`resolve_key` but a missing key is a :class:`ConfigError` naming both fixes."""
    key, _ = resolve_key(explicit, name, env_var)
    if key:
        return key
    looked = ["--api-key"] + ([f"stored key {name!r}"] if name else []) + ([f"${env_var}"] if env_var else [])
    fixes = []
    if name:
        fixes.append(f"run `pixmill keys set {name}`")
    if env_var:
        fixes.append(f"export {env_var}=...")
    raise ConfigError(f"{owner}: no API key found (looked at {', '.join(looked)})",
                      " or ".join(fixes) or "pass --api-key")


def default_key_name(env_var: str | None, fallback: str = "openai") -> str:
    """The stored-key name that goes with an environment variable: ``OPENROUTER_API_KEY`` ->
    ``openrouter``, ``GEMINI_API_KEY`` -> ``gemini``; ``fallback`` when there is none."""
    if not env_var:
        return fallback
    name = re.sub(r"_?(API_?KEY|KEY|TOKEN)$", "", env_var.upper()).strip("_").lower().replace("_", "-")
    return name if name and _NAME.match(name) else fallback
