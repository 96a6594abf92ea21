from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.test import Client

from tests.factories import PASSWORD, lease_with_resident

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")


def chicago(*args: int) -> dt.datetime:
    """An aware moment in the factories' default property time zone."""
    return dt.datetime(*args, tzinfo=CHICAGO)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2's million rounds per login would make this folder take minutes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def leased(db):
    """(lease, resident) where the resident has a portal login."""
    return lease_with_resident()


@pytest.fixture
def resident_client(leased) -> Client:
    client = Client()
    assert client.login(username=leased[1].user.username, password=PASSWORD)
    return client
