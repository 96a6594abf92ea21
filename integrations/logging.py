"""Logging filter that masks secrets wherever a record is formatted.

Known secrets are registered at run time (``register_secret``) when credentials are decrypted,
and common patterns (``Password`` elements and attributes in eDex/SOAP documents, ``password=``
pairs) are masked in every message, including zeep's DEBUG transport logs.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "********"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS = [
    # <Password>secret</Password>, <tns:Password>secret</tns:Password>
    (
        re.compile(r"(<(?:\w+:)?Password>)(.*?)(</(?:\w+:)?Password>)", re.S | re.I),
        r"\1" + MASK + r"\3",
    ),
    # Password="secret" (attributes), password: 'x', "password": "x", password=x
    (
        re.compile(r"""((?:password|passwd|secret|token)\s*=\s*["'])([^"']*)(["'])""", re.I),
        r"\1" + MASK + r"\3",
    ),
    (
        re.compile(
            r"""(["']?(?:password|passwd|secret|token)["']?\s*:\s*["'])([^"']*)(["'])""", re.I
        ),
        r"\1" + MASK + r"\3",
    ),
    (re.compile(r"((?:password|passwd)=)([^&\s]+)", re.I), r"\1" + MASK),
]


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in logs and stored documents."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def mask(text: str) -> str:
    """Return ``text`` with every known secret and password-looking value masked."""
    if not text:
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a broken format string must not stop logging)
            return True
        masked = mask(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        return True
