"""Production defaults and the command line a person meets first (issue 13 items 5 and 7):
DEBUG off unless turned on, ``check --deploy`` clean with the environment docs/configuration.md
documents, the portal's own 404/500 pages, one sentence for a database that was never migrated,
``make serve PORT=``, and every README command naming a real command with options it takes."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import django
import pytest
from django.core.management import get_commands, load_command_class
from django.test import RequestFactory
from django.views.defaults import server_error

from rentplatform.mail_settings import has_mailers
from tests.conftest import REPO_ROOT

# docs/configuration.md, "Production": the variables a deployment sets.
PRODUCTION_ENV = {
    "SECRET_KEY": "k7Jq2x9ZpLr4Vt8mWc3Ns6Bd1Fh5Gy0Ue2Ai7Oo9Pq4Rs8Tu3Vw6Xy1Za5Bc0De",
    "ALLOWED_HOSTS": "rent.example.com",
    "HTTPS": "1",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.com",
}


def manage(*args: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "SECRET_KEY", "HTTPS") and not k.startswith("EMAIL_")
    }
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**clean, "RENTPLATFORM_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_environment(tmp_path):
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name in PRODUCTION_ENV:
        assert f"{name}=" in docs, f"docs/configuration.md does not document {name}"
    done = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_flags_the_development_defaults(tmp_path):
    done = manage("check", "--deploy", env={}, tmp_path=tmp_path)
    text = done.stdout + done.stderr
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012"):
        assert warning in text, warning
    # The console mail backend: the reports would reach no manager (Django 6.1+ says it too).
    mail_check = "mail.E001" if has_mailers(django.VERSION) else "integrations.W003"
    assert mail_check in text


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    code = "from django.conf import settings; print(settings.DEBUG)"
    assert manage("shell", "-c", code, env={}, tmp_path=tmp_path).stdout.split()[-1] == "False"
    on = manage("shell", "-c", code, env={"DEBUG": "1"}, tmp_path=tmp_path)
    assert on.stdout.split()[-1] == "True"


def test_a_never_migrated_database_is_one_sentence(tmp_path):
    for args in (["amsi_probe", "maple"], ["integrations_reconcile", "--property", "maple"]):
        done = manage(*args, env={}, tmp_path=tmp_path)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "was never migrated" in line and "make demo" in line and "migrate" in line


@pytest.mark.django_db
def test_the_portal_shows_its_own_404_and_500(client, settings):
    settings.DEBUG = False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page and "Resident portal" in page and "Traceback" not in page
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()


def test_make_serve_takes_port():
    done = subprocess.run(
        ["make", "-n", "serve", "PORT=8123", "STAMP=Makefile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert "serve_demo --web 127.0.0.1:8123" in done.stdout, done.stdout + done.stderr


def readme_commands() -> list[list[str]]:
    """Every `manage.py` command line of the README's everyday commands, as written."""
    text = (REPO_ROOT / "README.md").read_text().replace("\\\n", " ")
    text = text.replace("$(date +%Y-%m)", "2026-11")  # the shell's, as typed
    lines = []
    for line in text.splitlines():
        if "manage.py" in line and line.startswith("    "):
            words = shlex.split(line.split("#")[0])
            lines.append(words[words.index("manage.py") + 1 :])
    return lines


def test_every_readme_command_parses_as_written():
    commands = readme_commands()
    assert len(commands) >= 8
    for argv in commands:
        name, args = argv[0], argv[1:]
        assert name in get_commands(), name
        parser = load_command_class(get_commands()[name], name).create_parser("manage.py", name)
        if "--help" in args:
            continue
        parser.parse_args(args)  # exits (fails the test) on an option the command lacks
