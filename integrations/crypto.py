"""Credentials encrypted at rest with Fernet (AES-128-CBC + HMAC, from ``cryptography``).

Keys come from ``INTEGRATIONS["CREDENTIALS_KEYS"]`` (first one encrypts, all decrypt, so keys can
be rotated); without any, a key is derived from SECRET_KEY so a development checkout works.
The field never returns ciphertext to forms, and its value is registered with the logging mask
the moment it is decrypted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from integrations.conf import get_setting
from integrations.logging import register_secret

PREFIX = "fernet:"


def _fernet() -> MultiFernet:
    keys = list(get_setting("CREDENTIALS_KEYS") or [])
    if not keys:
        digest = hashlib.sha256(
            ("integrations-credentials:" + settings.SECRET_KEY).encode()
        ).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError) as err:
        raise ImproperlyConfigured(
            "INTEGRATIONS['CREDENTIALS_KEYS'] holds a key that is not a Fernet key "
            "(generate one with cryptography.fernet.Fernet.generate_key())"
        ) from err


def encrypt(plain: str) -> str:
    return PREFIX + _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    if not token.startswith(PREFIX):
        raise ValueError("stored credentials are not encrypted")
    try:
        return _fernet().decrypt(token[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "stored credentials cannot be decrypted with the configured keys "
            "(INTEGRATIONS['CREDENTIALS_KEYS'] or SECRET_KEY changed?)"
        ) from None


class EncryptedJSONField(models.TextField):
    """A dict of secrets stored as one Fernet token."""

    def from_db_value(self, value: str | None, expression, connection) -> dict[str, Any]:
        if not value:
            return {}
        data = json.loads(decrypt(value))
        for secret in data.values():
            if isinstance(secret, str):
                register_secret(secret)
        return data

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        if isinstance(value, str) and value.startswith(PREFIX):
            return json.loads(decrypt(value))
        return json.loads(value)

    def get_prep_value(self, value: Any) -> str:
        if not value:
            return ""
        if isinstance(value, str) and value.startswith(PREFIX):
            return value
        for secret in value.values():
            if isinstance(secret, str):
                register_secret(secret)
        return encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj) -> str:
        # Serialisation (dumpdata) writes the ciphertext, never the plain secret.
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs):
        return None  # edited only through the connection form's write-only fields
