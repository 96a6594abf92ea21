"""Where the platform's email goes, read from the environment, for the Django that runs it.

Django 6.1 replaced its ``EMAIL_*`` settings with ``MAILERS``: the old names are deprecated
(removed in "Django 2028") and not allowed beside ``MAILERS``. The environment keeps Django's
old names (``EMAIL_BACKEND``, ``EMAIL_HOST``, ...), which every deployment already knows;
``mail_settings`` turns them into what the running Django reads: the ``EMAIL_*`` settings on
Django 5.2 and 6.0, one "default" mailer on 6.1 and later. No Django import here: settings.py
calls it before Django is set up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

CONSOLE = "django.core.mail.backends.console.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
# Backends that take a folder (``file_path``) and no server.
FILE_BACKENDS = (
    "django.core.mail.backends.filebased.EmailBackend",
    "rentplatform.mail.FileEmailBackend",
)
# Backends that send nowhere: they take none of the server's options.
LOCAL_BACKENDS = (
    CONSOLE,
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    *FILE_BACKENDS,
)


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("not a yes/no value (1, true, yes, on / 0, false, no, off)")


def _number(read: Callable) -> Callable:
    def parse(text: str):
        try:
            return read(text)
        except ValueError:
            raise ValueError("not a number") from None

    return parse


# The mail server's variables: environment name -> (the MAILERS option, how its text is read).
SERVER_VARIABLES: dict[str, tuple[str, Callable]] = {
    "EMAIL_HOST": ("host", str),
    "EMAIL_PORT": ("port", _number(int)),
    "EMAIL_HOST_USER": ("username", str),
    "EMAIL_HOST_PASSWORD": ("password", str),
    "EMAIL_USE_TLS": ("use_tls", _flag),
    "EMAIL_USE_SSL": ("use_ssl", _flag),
    "EMAIL_TIMEOUT": ("timeout", _number(float)),
}


def has_mailers(version: tuple) -> bool:
    """Whether this Django reads ``MAILERS`` (6.1 and later)."""
    return tuple(version[:2]) >= (6, 1)


def mail_settings(environ: Mapping[str, str], var_dir: Path | str, version: tuple) -> dict:
    """The mail settings for Django ``version`` from ``environ``: ``EMAIL_BACKEND`` (console
    when unset), ``EMAIL_FILE_PATH`` (``var_dir``/mail) and the mail server's variables
    (``SERVER_VARIABLES``, each only when set). A value that cannot be read is refused here,
    naming its variable."""
    backend = environ.get("EMAIL_BACKEND") or CONSOLE
    file_path = environ.get("EMAIL_FILE_PATH") or str(Path(var_dir) / "mail")
    server: dict[str, tuple[str, object]] = {}  # variable -> (option, value)
    for name, (option, read) in SERVER_VARIABLES.items():
        text = environ.get(name)
        if text is None or text == "":
            continue
        try:
            server[name] = (option, read(text))
        except ValueError as err:  # (the password is text: never refused, never shown)
            raise ImproperlyConfigured(f"{name}={text!r}: {err}") from None
    if not has_mailers(version):
        return {
            "EMAIL_BACKEND": backend,
            "EMAIL_FILE_PATH": file_path,
            **{name: value for name, (_option, value) in server.items()},
        }
    options: dict[str, object] = {}
    if backend in FILE_BACKENDS:
        options["file_path"] = file_path
    elif backend not in LOCAL_BACKENDS:
        # SMTP, or a project's own network backend: the server's options. Django's SMTP
        # mailer requires a host; "localhost" was the old EMAIL_HOST's default.
        if backend == SMTP:
            options["host"] = "localhost"
        options.update(dict(server.values()))
    return {"MAILERS": {"default": {"BACKEND": backend, "OPTIONS": options}}}
