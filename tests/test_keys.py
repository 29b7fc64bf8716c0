"""API keys: the user-only key file, the lookup order, the `pixmill keys` commands, and the
missing-key error that fails a run before any work."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pixmill import keys
from pixmill.errors import ConfigError

PIXMILL = [str(Path(sys.executable).with_name("pixmill"))]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated key store, and no key in the environment."""
    monkeypatch.setenv("PIXMILL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path / "home"


def test_set_get_remove_list(home):
    path = keys.set_key("openai", "  sk-abc  ")
    assert path == home / "keys.json"
    assert keys.get_key("openai") == "sk-abc"
    keys.set_key("openrouter", "sk-or")
    assert keys.key_names() == ["openai", "openrouter"]
    assert keys.remove_key("openai") is True
    assert keys.remove_key("openai") is False
    assert keys.get_key("openai") is None


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_file_is_user_only(home):
    old = os.umask(0o022)  # a typical umask would leave new files world-readable
    try:
        path = keys.set_key("openai", "sk-abc")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob(".*tmp"))  # no temp file left behind


def test_default_location_is_the_user_config_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("PIXMILL_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert keys.keys_path() == tmp_path / "cfg" / "pixmill" / "keys.json"


def test_lookup_order(home, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert keys.resolve_key(None, "openai", "OPENAI_API_KEY") == ("from-env", "env:OPENAI_API_KEY")
    keys.set_key("openai", "from-store")
    assert keys.resolve_key(None, "openai", "OPENAI_API_KEY") == ("from-store", "stored:openai")
    assert keys.resolve_key("explicit", "openai", "OPENAI_API_KEY") == ("explicit", "option")


def test_missing_key_names_both_fixes(home):
    with pytest.raises(ConfigError) as err:
        keys.require_key(None, "openai", "OPENAI_API_KEY", owner="serving openai-images")
    text = str(err.value)
    assert "pixmill keys set openai" in text and "OPENAI_API_KEY" in text
    assert "\n" not in text


@pytest.mark.parametrize("env, name", [("OPENAI_API_KEY", "openai"), ("OPENROUTER_API_KEY", "openrouter"),
                                       ("GEMINI_API_KEY", "gemini"), ("MY_PROXY_TOKEN", "my-proxy"),
                                       (None, "openai")])
def test_stored_key_name_follows_the_env_var(env, name):
    assert keys.default_key_name(env) == name


def test_bad_names_and_empty_values_are_refused(home):
    with pytest.raises(ConfigError, match="not valid"):
        keys.set_key("../etc/passwd", "x")
    with pytest.raises(ConfigError, match="empty key"):
        keys.set_key("openai", "   ")


def test_corrupt_key_file_is_a_clear_error(home):
    home.mkdir(parents=True)
    (home / "keys.json").write_text("{not json")
    with pytest.raises(ConfigError, match="keys.json is not valid JSON"):
        keys.get_key("openai")


# -- the CLI --------------------------------------------------------------------------------------
def run_cli(args, home, stdin=""):
    env = {**os.environ, "PIXMILL_HOME": str(home)}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(PIXMILL + args, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def test_cli_set_list_remove_path(tmp_path):
    home = tmp_path / "home"
    done = run_cli(["keys", "set", "openai"], home, stdin="sk-from-stdin\n")
    assert done.returncode == 0, done.stderr
    assert "sk-from-stdin" not in done.stdout + done.stderr
    assert (home / "keys.json").is_file()
    listed = run_cli(["keys", "list"], home)
    assert listed.stdout.split() == ["openai"] and "sk-from-stdin" not in listed.stdout
    assert run_cli(["keys", "path"], home).stdout.strip() == str(home / "keys.json")
    assert run_cli(["keys", "remove", "openai"], home).returncode == 0
    missing = run_cli(["keys", "remove", "openai"], home)
    assert missing.returncode != 0 and "no stored key named 'openai'" in missing.stderr


def test_cli_value_option_works_but_warns(tmp_path):
    home = tmp_path / "home"
    done = run_cli(["keys", "set", "gemini", "--value", "g-123"], home)
    assert done.returncode == 0
    assert "Warning" in done.stderr and "shell history" in done.stderr
    env = {**os.environ, "PIXMILL_HOME": str(home)}
    check = subprocess.run([sys.executable, "-c", "from pixmill.keys import get_key; print(get_key('gemini'))"],
                           capture_output=True, text=True, env=env)
    assert check.stdout.strip() == "g-123"
