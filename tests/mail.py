"""Pointing a test's mail at a backend, on whichever Django runs the suite."""

from __future__ import annotations

import django

from rentplatform.mail_settings import has_mailers


def use_mail_backend(settings, backend: str, *, timeout: float | None = None) -> None:
    """``settings`` (pytest-django's fixture): mail goes to ``backend``, opened with ``timeout``
    when one is given. Django 6.1+: the "default" mailer (MAILERS, its ``timeout`` option);
    before: EMAIL_BACKEND and EMAIL_TIMEOUT."""
    if has_mailers(django.VERSION):
        options = {} if timeout is None else {"timeout": timeout}
        settings.MAILERS = {"default": {"BACKEND": backend, "OPTIONS": options}}
        return
    settings.EMAIL_BACKEND = backend
    settings.EMAIL_TIMEOUT = timeout
