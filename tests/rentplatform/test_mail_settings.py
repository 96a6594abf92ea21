"""rentplatform.mail_settings: the environment's EMAIL_* variables as the settings the running
Django reads (EMAIL_* before 6.1, MAILERS from 6.1), and the reports' mail path without a
deprecation warning on either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from rentplatform.mail_settings import CONSOLE, SMTP, has_mailers, mail_settings

OLD, NEW = (5, 2, 8, "final", 0), (6, 1, 3, "final", 0)
SERVER = {
    "EMAIL_HOST": "smtp.example.test",
    "EMAIL_PORT": "2525",
    "EMAIL_HOST_USER": "reports",
    "EMAIL_HOST_PASSWORD": "pw",
    "EMAIL_USE_TLS": "yes",
    "EMAIL_TIMEOUT": "12.5",
}
REPO = Path(__file__).resolve().parents[2]


def test_which_django_reads_mailers():
    assert not has_mailers(OLD) and not has_mailers((6, 0, 1, "final", 0))
    assert has_mailers(NEW) and has_mailers((7, 0, 0, "alpha", 0))


def test_before_6_1_the_email_settings_as_before():
    assert mail_settings({}, "/srv/var", OLD) == {
        "EMAIL_BACKEND": CONSOLE,
        "EMAIL_FILE_PATH": "/srv/var/mail",
    }
    got = mail_settings({"EMAIL_BACKEND": SMTP, **SERVER}, "/srv/var", OLD)
    assert got["EMAIL_BACKEND"] == SMTP
    assert (got["EMAIL_HOST"], got["EMAIL_PORT"], got["EMAIL_USE_TLS"]) == (
        "smtp.example.test",
        2525,
        True,
    )
    assert got["EMAIL_TIMEOUT"] == 12.5 and got["EMAIL_HOST_PASSWORD"] == "pw"
    assert "MAILERS" not in got


def test_from_6_1_one_default_mailer():
    console = mail_settings({}, "/srv/var", NEW)
    assert console == {"MAILERS": {"default": {"BACKEND": CONSOLE, "OPTIONS": {}}}}

    files = mail_settings(
        {"EMAIL_BACKEND": "rentplatform.mail.FileEmailBackend", **SERVER}, "/srv/var", NEW
    )
    assert files["MAILERS"]["default"]["OPTIONS"] == {"file_path": "/srv/var/mail"}

    smtp = mail_settings({"EMAIL_BACKEND": SMTP, **SERVER}, "/srv/var", NEW)
    assert smtp["MAILERS"]["default"] == {
        "BACKEND": SMTP,
        "OPTIONS": {
            "host": "smtp.example.test",
            "port": 2525,
            "username": "reports",
            "password": "pw",
            "use_tls": True,
            "timeout": 12.5,
        },
    }
    # Django's SMTP mailer insists on a host: the old default when none is set.
    bare = mail_settings({"EMAIL_BACKEND": SMTP}, "/srv/var", NEW)
    assert bare["MAILERS"]["default"]["OPTIONS"] == {"host": "localhost"}
    # A project's own network backend gets the server's options as given, no host invented.
    own = mail_settings({"EMAIL_BACKEND": "myproject.mail.Relay", "EMAIL_PORT": "25"}, "/v", NEW)
    assert own["MAILERS"]["default"]["OPTIONS"] == {"port": 25}
    # The console prints: the server's variables do not reach it.
    quiet = mail_settings({"EMAIL_BACKEND": CONSOLE, **SERVER}, "/srv/var", NEW)
    assert quiet["MAILERS"]["default"]["OPTIONS"] == {}


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [("EMAIL_PORT", "smtp", "not a number"), ("EMAIL_USE_TLS", "maybe", "yes/no")],
)
def test_a_value_that_cannot_be_read_is_refused_by_name(name, value, said):
    for version in (OLD, NEW):
        with pytest.raises(ImproperlyConfigured) as refused:
            mail_settings({"EMAIL_BACKEND": SMTP, name: value}, "/srv/var", version)
        assert str(refused.value).startswith(f"{name}={value!r}: ") and said in str(refused.value)


def test_the_running_settings_use_what_this_django_reads(settings):
    assert hasattr(settings, "MAILERS") == has_mailers(django.VERSION)


SEND = """
import warnings
warnings.simplefilter("error")  # a deprecation warning fails the run
import django
django.setup()
from django.core import mail
from integrations import reports
message = mail.EmailMessage("subject", "body", "from@example.test", ["to@example.test"])
print("sent", reports.mail_connection().send_messages([message]))
"""


def test_the_reports_mail_path_raises_no_deprecation_warning(tmp_path):
    """The settings as the environment gives them and the reports' connection, on the Django
    that runs the suite: on 6.1 the EMAIL_* settings and ``get_connection`` are deprecated
    (gone in Django 2028), and this run turns every warning into an error."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")},
        "DJANGO_SETTINGS_MODULE": "rentplatform.settings",
        "RENTPLATFORM_VAR_DIR": str(tmp_path),
        "EMAIL_BACKEND": "rentplatform.mail.FileEmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "PYTHONWARNINGS": "error",
    }
    done = subprocess.run(
        [sys.executable, "-c", SEND], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "sent 1"
    assert len(list((tmp_path / "mail").glob("*.log"))) == 1


def test_deploy_check_warns_when_the_reports_would_reach_no_one(settings):
    """integrations.W003 (check --deploy): the reports' backend is one that delivers to no one.
    Django 6.1 checks its own "default" mailer (mail.E001): W003 then looks only at another
    REPORT_MAILER alias."""
    from integrations.checks import check_report_mail

    console, smtp = CONSOLE, SMTP
    if has_mailers(django.VERSION):
        settings.MAILERS = {"default": {"BACKEND": console}, "reports": {"BACKEND": console}}
        assert check_report_mail(None) == []  # Django's mail.E001 says it
        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "REPORT_MAILER": "reports"}
        assert [w.id for w in check_report_mail(None)] == ["integrations.W003"]
        settings.MAILERS = {"reports": {"BACKEND": smtp, "OPTIONS": {"host": "mail.test"}}}
        assert check_report_mail(None) == []
    else:
        settings.EMAIL_BACKEND = console
        (warning,) = check_report_mail(None)
        assert warning.id == "integrations.W003" and console in warning.msg
        settings.EMAIL_BACKEND = smtp
        assert check_report_mail(None) == []
