"""Credentials refused, as a real eSite says it: error code 1 "Validation of user credentials
failed." in an InternetTrafficResponse, or a SOAP Fault (both seen in public clients). Either
pauses the connection once; no posting falls into "needs attention" or spends its attempts."""

from __future__ import annotations

import logging

import pytest

from integrations import outbox, services
from integrations.models import Connection, PostingState
from integrations_amsi.client import clear_clients
from integrations_amsi.identifiers import client_transaction_id

ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"


def _set_password(world, password: str) -> None:
    world.connection.refresh_from_db()
    world.connection.credentials = {"password": password}
    world.connection.save()
    clear_clients()


@pytest.mark.parametrize("login_error", ["document", "fault"])
def test_refused_credentials_pause_the_connection_and_lose_nothing(
    world, deliver, login_error, caplog
):
    world.control.set_variants(login_error=login_error)
    _set_password(world, "changed-in-esite")
    with caplog.at_level(logging.ERROR, logger="integrations.outbox"), deliver():
        first = world.pay(ALLOWED, "100.00", "card")
        second = world.pay(OTHER, "200.00", "card")
    connection = Connection.objects.get(pk=world.connection.pk)
    assert connection.paused_at is not None
    assert "credentials" in connection.paused_reason.lower()
    alerts = [r for r in caplog.records if "credentials refused" in r.getMessage()]
    assert len(alerts) == 1, [r.getMessage() for r in caplog.records]
    for payment in (first, second):
        posting = world.posting(payment)
        assert posting.state in (PostingState.PENDING, PostingState.RETRYING)
        assert posting.attempts == 0
    # The second posting was never sent: the connection was already paused.
    assert world.posting(second).attempt_log.count() == 0
    assert not outbox.due_postings().exists()
    assert world.ledger() == {}

    check = services.test_connection(connection)
    assert not check.ok
    assert "credentials refused" in check.message
    assert "changed-in-esite" not in check.message

    _set_password(world, "sandbox-secret")
    with deliver():
        check = services.test_connection(Connection.objects.get(pk=world.connection.pk))
    assert check.ok, check.message
    connection.refresh_from_db()
    assert connection.paused_at is None
    booked = [e["client_transaction_id"] for e in world.entries(first.batch.batch_id)]
    for payment in (first, second):
        posting = world.posting(payment)
        assert posting.state == PostingState.POSTED
        assert booked.count(client_transaction_id(posting)) == 1


@pytest.mark.parametrize("login_error", ["document", "fault"])
def test_import_with_refused_credentials_fails_and_says_so(world, login_error):
    from integrations.services import run_sync

    world.control.set_variants(login_error=login_error)
    _set_password(world, "wrong")
    run = run_sync(world.connection, "full")
    assert run.status == "failed"
    assert "login" in run.message.lower() or "credentials" in run.message.lower()
    assert "wrong" not in run.message
