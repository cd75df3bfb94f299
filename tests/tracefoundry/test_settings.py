"""Settings come from the environment; production fails closed; check --deploy passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("env, missing", [
    ({"DEBUG": "0", "ALLOWED_HOSTS": "example.com"}, "SECRET_KEY"),
    ({"DEBUG": "0", "SECRET_KEY": "x" * 60}, "ALLOWED_HOSTS"),
])
def test_production_refuses_to_start_without_secrets(env, missing):
    result = manage("check", **env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_bad_values_are_rejected():
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG must be a boolean" in result.stderr


def test_check_deploy_passes_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0",
                    SECRET_KEY="k" * 64 + "-Production-Secret-Key-123",
                    ALLOWED_HOSTS="tf.example.com")
    assert result.returncode == 0, result.stderr + result.stdout


def test_env_example_lists_every_setting_read_from_the_environment():
    import re

    settings_src = (ROOT / "tracefoundry" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|list|choice)\(\s*"([A-Z_]+)"', settings_src))
    names |= {f"TRACEFOUNDRY_{n}" for n in re.findall(r'_tf_int\(\s*"([A-Z_]+)"', settings_src)}
    example = (ROOT / "deploy" / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE))
    assert names - documented == set(), "undocumented settings"


def test_bad_redaction_pattern_stops_start_up():
    result = manage("check", TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS='{"broken": "(unclosed"}')
    assert result.returncode != 0 and "payloads.E001" in result.stderr
