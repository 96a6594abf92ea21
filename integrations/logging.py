"""Masking of secrets in every log record, whichever handler formats it.

Known secrets are registered at run time (``register_secret``) when credentials are decrypted,
and common patterns (``Password`` elements and attributes in eDex/SOAP documents, ``password=``
pairs) are masked in every message, including zeep's DEBUG transport logs.

Design note: a filter on one handler (settings.LOGGING's console) only protects that handler;
a handler added later on the root logger (Sentry, a file, pytest's capture) would still see the
password in zeep's "HTTP Post to ..." envelope. Logger filters do not help either: they only run
for records logged on that very logger, not on its children (``zeep.transports``). So
``install_record_masking`` (called from ``IntegrationsConfig.ready()``) wraps the log record
factory: every record is masked once, when it is created, before any handler can see it. The
filter stays for configurations that build records some other way.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

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


# Every pattern above needs one of these words: a text without them (most eDex documents, the
# stored request and reply of every posting) skips the four scans (60 us on a 700-character
# document; the check, a lower-cased copy searched three times, 3.5 us).
_KEYWORDS = ("passw", "secret", "token")


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in logs and stored documents."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def mask(text: str) -> str:
    """Return ``text`` with every known secret and password-looking value masked."""
    if not text:
        return text
    lowered = text.lower()
    if any(word in lowered for word in _KEYWORDS):
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the record's message and traceback text in place (and return it)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001  (a broken format string must not stop logging)
        return record
    masked = mask(message)
    if masked != message or record.args:
        record.msg = masked
        record.args = None
    if record.exc_info and not record.exc_text:
        # A traceback's exception message may quote a request; format it now, masked
        # (formatters reuse exc_text instead of formatting exc_info again).
        record.exc_text = mask(_TRACEBACKS.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = mask(record.exc_text)
    if record.stack_info:
        record.stack_info = mask(record.stack_info)
    return record


_TRACEBACKS = logging.Formatter()


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_record_masking() -> None:
    """Make every log record masked at creation (idempotent; keeps any previous factory)."""
    with _lock:
        previous = logging.getLogRecordFactory()
        if getattr(previous, "masks_secrets", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return mask_record(previous(*args, **kwargs))

        factory.masks_secrets = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
