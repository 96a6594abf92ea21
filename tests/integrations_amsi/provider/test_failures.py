"""Transport and remote failures: a clear message in the command output and the SyncRun,
nothing half-imported, and the next run recovers."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from integrations.models import SyncRun, SyncStatus
from integrations_amsi.client import clear_clients
from integrations_amsi.models import AmsiLeaseLink
from rentplatform.models import Lease, Resident, Unit

from .conftest import connect

pytestmark = pytest.mark.django_db


def import_fails(match: str) -> SyncRun:
    with pytest.raises(CommandError, match=match):
        call_command("amsi_import", "maple")
    run = SyncRun.objects.latest("started_at")
    assert run.status == SyncStatus.FAILED
    assert run.created == run.updated == 0
    # nothing half-imported: not even the units written before the residents were read
    assert Lease.objects.count() == AmsiLeaseLink.objects.count() == 0
    assert Unit.objects.count() == Resident.objects.count() == 0
    return run


def import_recovers() -> None:
    clear_clients()
    call_command("amsi_import", "maple")
    run = SyncRun.objects.latest("started_at")
    assert run.status == SyncStatus.SUCCEEDED and run.created == 24


def test_wrong_password(amsi_connection):
    amsi_connection.credentials = {"password": "not-the-password"}
    amsi_connection.save()
    run = import_fails("refused the login")
    assert "refused the login" in run.message and "not-the-password" not in run.message
    amsi_connection.credentials = {"password": "sandbox-secret"}
    amsi_connection.save()
    import_recovers()


def test_unreachable_host(amsi_sandbox, closed_port, db):
    conn = connect(f"http://127.0.0.1:{closed_port}")
    run = import_fails("cannot reach|cannot connect")
    assert str(closed_port) in run.message
    conn.settings["url"] = amsi_sandbox.base_url + "/edexweb/esite"
    conn.save()
    import_recovers()


def test_timeout(amsi_connection, control):
    amsi_connection.settings["timeout"] = 1
    amsi_connection.save()
    control.add_fault("latency", "GetPropertyResidents", seconds=2.5)
    run = import_fails("no reply within 1 s")
    assert "GetPropertyResidents" in run.message
    control.clear_faults()
    import_recovers()


def test_http_error_reply(amsi_connection, control):
    control.add_fault("http500", "GetPropertyResidents", count=1)
    run = import_fails("HTTP 500")
    assert "GetPropertyResidents" in run.message
    import_recovers()


def test_edex_error_reply(amsi_connection):
    amsi_connection.settings["property_id"] = "999"
    amsi_connection.save()
    run = import_fails("AMSI refused")
    assert "102" in run.message
    amsi_connection.settings["property_id"] = "001"
    amsi_connection.save()
    import_recovers()


def test_malformed_reply(amsi_connection, control):
    control.add_fault("malformed", "GetPropertyResidents", count=1)
    run = import_fails("malformed")
    assert "GetPropertyResidents" in run.message
    import_recovers()


def test_connection_reset(amsi_connection, control):
    control.add_fault("reset", "GetPropertyUnits", count=1)
    import_fails("GetPropertyUnits")
    import_recovers()


def test_resyncs_failing_are_mailed_to_the_managers(amsi_connection, control, settings):
    """eSite answers the delta query with HTTP 500, run after run: the managers are told,
    with the run's own message and what it means for payment blocks."""
    from django.core import mail

    from integrations.attention import attention_mail
    from integrations.models import SyncKind
    from integrations.services import run_sync
    from tests.mail import use_mail_backend

    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "SYNC_FAILURE_MAIL_MINUTES": 0}
    import_recovers()
    control.add_fault("http500", "GetResidentsByStatusChangeOrTransactionDate", count=2)
    runs = [run_sync(amsi_connection, SyncKind.DELTA, triggered_by="test") for _ in range(2)]
    assert [r.status for r in runs] == [SyncStatus.FAILED, SyncStatus.FAILED]
    mail.outbox = []
    assert attention_mail() == 1
    (message,) = mail.outbox
    assert message.subject == "Maple Court: resyncs from eSite are failing"
    assert "2 in a row" in message.body and "HTTP 500" in message.body
    assert "a lease blocked in eSite can still be paid online" in message.body
    control.clear_faults()
    assert run_sync(amsi_connection, SyncKind.DELTA, triggered_by="test").status == "succeeded"
    assert attention_mail() == 0
