from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection as db_connection

from integrations import crypto
from integrations.exceptions import ProviderConfigurationError
from integrations.models import Connection
from integrations.providers import registry
from integrations.providers.base import AccountingProvider
from tests.factories import PropertyFactory


class Incomplete(AccountingProvider):
    id = "incomplete"
    name = "Incomplete"


def test_unimplemented_hook_names_the_class():
    provider = Incomplete(connection=None)
    with pytest.raises(NotImplementedError, match=r"test_framework\.Incomplete must implement"):
        provider.post_payment(None)


def test_registry_refuses_unknown_and_conflicting_ids():
    with pytest.raises(ProviderConfigurationError, match="no accounting provider 'nope'"):
        registry.get("nope")

    class Other(AccountingProvider):
        id = "fake"

    with pytest.raises(ProviderConfigurationError, match="taken"):
        registry.register(Other)
    assert ("fake", registry.get("fake").name) in registry.as_choices()


@pytest.mark.django_db
def test_credentials_are_encrypted_at_rest():
    prop = PropertyFactory()
    Connection.objects.create(
        property=prop, provider="fake", credentials={"password": "s3cret-Passw0rd"}
    )
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_connection")
        (raw,) = cursor.fetchone()
    assert "s3cret-Passw0rd" not in raw
    assert raw.startswith(crypto.PREFIX)
    assert Connection.objects.get().credentials == {"password": "s3cret-Passw0rd"}


@pytest.mark.django_db
def test_dumpdata_holds_no_plaintext_password(capsys):
    prop = PropertyFactory()
    Connection.objects.create(
        property=prop, provider="fake", credentials={"password": "s3cret-Passw0rd"}
    )
    call_command("dumpdata", "integrations.connection")
    out = capsys.readouterr().out
    assert "s3cret-Passw0rd" not in out
    assert crypto.PREFIX in out


@pytest.mark.django_db
def test_schedules_are_created_once_by_name(capsys):
    from django_q.models import Schedule

    call_command("integrations_schedule")
    first = set(Schedule.objects.values_list("name", flat=True))
    call_command("integrations_schedule")
    out = capsys.readouterr().out
    assert Schedule.objects.count() == len(first) == 6
    assert {
        "integrations.retry_sweep",
        "integrations.delta_sync",
        "integrations.report_delivery",
        "integrations.attention_mail",
    } <= first
    assert out.count("unchanged") == 6
