"""The sandbox as a program: ``python -m integrations_amsi.sandbox`` and the ``amsi_sandbox``
command that wraps it (its variant flags, its help), started with the one start-and-wait helper;
and that it needs no Django."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

from integrations_amsi.sandbox.process import start_process, stop_group
from integrations_amsi.sandbox.variants import VARIANTS, defaults

REPO = Path(__file__).resolve().parents[3]


def test_cli_refuses_unknown_variants_clearly():
    with pytest.raises(CommandError, match=r"unknown variant 'speed'.*ids=int32\|lenient"):
        call_command("amsi_sandbox", variant=["speed=fast"])
    with pytest.raises(CommandError, match=r"variant ids cannot be 'int64'; allowed: int32"):
        call_command("amsi_sandbox", variant=["ids=int64"])
    with pytest.raises(CommandError, match="--variant takes NAME=VALUE"):
        call_command("amsi_sandbox", variant=["ids"])


def test_cli_help_lists_every_value():
    out = subprocess.run(
        [sys.executable, "manage.py", "amsi_sandbox", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.replace("\n", " ")
    text = " ".join(out.split())
    for name, variant in VARIANTS.items():
        for value in variant.allowed:
            assert f"{name}={value}" in text


def test_cli_variant_flags_reach_the_running_sandbox(tmp_path):
    log = tmp_path / "sandbox.log"
    started = start_process(
        tmp_path / "cli.sqlite3",
        args=["--variant", "ids=lenient", "--variant", "return_batch=original"],
        log=log,
    )
    try:
        variants = httpx.get(started.base_url + "/sandbox/variants", timeout=10).json()
        assert variants["variants"] == {**defaults(), "ids": "lenient", "return_batch": "original"}
        said = log.read_text()
        assert f"AMSI eDex sandbox on {started.base_url}/" in said
        assert "ids=lenient" in said and "return_batch=original" in said
    finally:
        stop_group(started.proc)


def test_the_sandbox_runs_without_django(tmp_path):
    """Imported and started in a process that has no Django settings: nothing in the sandbox
    needs Django (manage.py amsi_sandbox only wraps it)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    script = (
        "import sys, integrations_amsi.sandbox.server, integrations_amsi.sandbox.process, "
        "integrations_amsi.sandbox.testing; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
    started = start_process(tmp_path / "plain.sqlite3", seed="demo", env=env, log=tmp_path / "l")
    try:
        health = httpx.get(started.base_url + "/sandbox/health", timeout=10).json()
        assert health["variants"] == defaults()
        wsdl = httpx.get(started.base_url + "/edexweb/esite/leasing.asmx?wsdl", timeout=10)
        assert wsdl.status_code == 200 and b"GetPropertyResidents" in wsdl.content
    finally:
        stop_group(started.proc)
