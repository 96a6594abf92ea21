"""The eDex password never leaves the connection row in clear: not in a database dump, not in
any log handler (zeep's DEBUG transport log included), not in stored documents, task
arguments or error messages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection as db
from django_q.models import OrmQ, Task

from integrations import logging as masking
from integrations import services
from integrations.exceptions import RetryableError
from integrations.logging import MASK
from integrations.models import Connection, Posting, PostingAttempt, SyncRun
from integrations.services import run_sync
from integrations_amsi.client import clear_clients
from integrations_amsi.provider import AmsiProvider

from .conftest import PASSWORD


class _Collect(logging.Handler):
    """Keeps every formatted record: stands for any handler someone adds to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def root_handler() -> Iterator[_Collect]:
    handler = _Collect()
    root = logging.getLogger()
    transports = logging.getLogger("zeep.transports")
    old_level = transports.level
    transports.setLevel(logging.DEBUG)
    # First in line: the console handler's filter rewrites records in place, which would hide
    # a missing mask from handlers that happen to run after it.
    root.handlers.insert(0, handler)
    yield handler
    root.removeHandler(handler)
    transports.setLevel(old_level)


@pytest.fixture
def isolated_secrets(monkeypatch) -> None:
    """Secrets registered by this test are forgotten afterwards (the registry is per process)."""
    monkeypatch.setattr(masking, "_secrets", set(masking._secrets))


# -- at rest -----
def test_dump_and_raw_column_hold_no_plaintext_password(world):
    """Removing the Fernet field (a plain JSONField) would put the password in both."""
    out = StringIO()
    call_command("dumpdata", stdout=out)
    dump = out.getvalue()
    assert '"credentials": "fernet:' in dump
    assert PASSWORD not in dump
    with db.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_connection")
        (stored,) = cursor.fetchone()
    assert stored.startswith("fernet:") and PASSWORD not in stored
    assert Connection.objects.get().credentials == {"password": PASSWORD}


@pytest.mark.parametrize(
    "override",
    [
        {"SECRET_KEY": "another-secret-key-entirely"},
        {"INTEGRATIONS_KEYS": [Fernet.generate_key().decode()]},
    ],
    ids=["other-secret-key", "other-fernet-key"],
)
def test_other_key_cannot_decrypt(world, settings, override):
    """Without the key the row is unreadable, and says so (not a bare InvalidToken)."""
    if "SECRET_KEY" in override:
        settings.SECRET_KEY = override["SECRET_KEY"]
    else:
        settings.INTEGRATIONS = {
            **settings.INTEGRATIONS,
            "CREDENTIALS_KEYS": override["INTEGRATIONS_KEYS"],
        }
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted with the configured keys"):
        Connection.objects.get(pk=world.connection.pk)


# -- logs -----
def test_zeep_debug_transport_log_is_masked_for_every_handler(world, root_handler, deliver):
    """zeep logs each envelope (with <Password>) at DEBUG on ``zeep.transports``. The mask is
    installed on the log record factory; with it removed (only the console handler's filter
    left), this root handler would receive the password in clear."""
    clear_clients()
    assert services.test_connection(Connection.objects.get()).ok  # GetPropertyList
    with deliver():
        payment = world.pay("001-01-101-1", "25.00")  # AddPayment through the outbox
    assert Posting.objects.get(payment=payment).state == "posted"
    text = root_handler.text
    assert "GetPropertyList" in text and "AddPayment" in text, "zeep did not log the envelopes"
    assert "HTTP Post to" in text
    assert PASSWORD not in text
    assert f"Password>{MASK}</" in text


def test_exception_tracebacks_in_logs_are_masked(root_handler, isolated_secrets):
    """A traceback's message can quote a request; formatted once at record creation, masked."""
    masking.register_secret("tr4ceback-secret")
    log = logging.getLogger("integrations.tests")
    try:
        raise ValueError("request was <Password>tr4ceback-secret</Password>")
    except ValueError:
        log.exception("delivery crashed for %s", "tr4ceback-secret")
    assert "tr4ceback-secret" not in root_handler.text
    assert root_handler.text.count(MASK) >= 2


# -- stored documents -----
def test_stored_documents_are_masked(world, deliver, isolated_secrets):
    """The remote echoes ClientMerchantID in its reply; with the password equal to it, the
    reply carries the secret verbatim, as a remote echoing the request would. Without the
    masking of stored documents, request_document/response_document would hold it."""
    echoed = world.connection.settings["merchant_id"]
    world.server.stop()
    world.server.password = echoed
    world.server.start()
    conn = Connection.objects.get()
    conn.credentials = {"password": echoed}
    conn.save()
    clear_clients()
    with deliver():
        payment = world.pay("001-01-101-1", "30.00")
    posting = Posting.objects.get(payment=payment)
    assert posting.state == "posted", posting.last_error
    for document in (posting.request_document, posting.response_document):
        assert echoed not in document
        assert f'ClientMerchantID="{MASK}"' in document


def test_failed_attempts_store_no_password(world, deliver):
    """HTTP 500 and a malformed reply: errors and documents of each attempt hold no password."""
    world.confirm_duplicates_refused()  # the unknown outcomes are re-sent: two attempts fail
    world.control.add_fault("http500", "AddPayment", count=1)
    world.control.add_fault("malformed", "AddPayment", count=1)
    with deliver():
        payment = world.pay("001-01-101-1", "31.00")
    world.deliver_all()
    posting = Posting.objects.get(payment=payment)
    attempts = list(PostingAttempt.objects.filter(posting=posting))
    assert len(attempts) >= 2 and any(a.error for a in attempts)
    stored = [posting.request_document, posting.response_document, posting.last_error]
    stored += [a.error for a in attempts]
    assert all(PASSWORD not in text for text in stored)


# -- task arguments -----
def test_tasks_take_only_ids(world, settings, deliver):
    """A queued task is pickled into the broker (OrmQ) and then into Task rows: passing the
    connection or its settings instead of an id would put the password there."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async"}
    with deliver():
        payment = world.pay("001-01-101-1", "32.00")
    posting = Posting.objects.get(payment=payment)
    queued = [row.task for row in OrmQ.objects.all()]
    assert queued, "no task was queued"
    ids = {  # a posting's own task takes its id; a connection's drain, the connection's
        "integrations.tasks.deliver_posting": (posting.pk,),
        "integrations.tasks.drain_connection": (posting.connection_id,),
    }
    for task in queued:
        assert task["args"] == ids[task["func"]] and task["kwargs"] == {}
        assert PASSWORD not in repr(task)
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "sync"}
    with deliver():
        world.pay("001-01-102-2", "33.00")
    for task in Task.objects.all():
        assert all(isinstance(arg, int) for arg in task.args or ())
        assert PASSWORD not in repr(task.args) + repr(task.kwargs) + repr(task.result)


# -- error messages -----
def test_wrong_password_messages_hold_no_password(world):
    """A wrong password: the connection test and a sync say "bad login", never the password."""
    conn = Connection.objects.get()
    conn.credentials = {"password": "wrong-pass-9431"}
    conn.save()
    clear_clients()
    check = services.test_connection(conn)
    assert not check.ok and "bad login" in check.message
    run = run_sync(Connection.objects.get(), "full")
    assert run.status == "failed"
    for text in (check.message, Connection.objects.get().last_test_message, run.message):
        assert "wrong-pass-9431" not in text and PASSWORD not in text


def test_error_messages_quoting_the_request_are_masked(world, monkeypatch):
    """A provider error that quotes the envelope (zeep faults do) is masked before it is stored
    on the connection or the sync run; without mask() there, both would hold the password."""
    envelope = f"<soap:Envelope><Password>{PASSWORD}</Password></soap:Envelope>"

    def leaky(*args, **kwargs):
        raise RetryableError(f"remote said: {PASSWORD} in {envelope}", provider="amsi")

    monkeypatch.setattr(AmsiProvider, "test_connection", leaky)
    monkeypatch.setattr(AmsiProvider, "sync", leaky)
    conn = Connection.objects.get()
    check = services.test_connection(conn)
    run = run_sync(conn, "delta")
    stored = Connection.objects.get().last_test_message
    for text in (check.message, stored, SyncRun.objects.get(pk=run.pk).message):
        assert PASSWORD not in text and MASK in text


# -- mails -----
def test_the_attention_mail_holds_no_password(world, deliver, settings):
    """The managers' mail of what waits for a person quotes errors and a pause's reason: each
    masked, so a reason that quoted the envelope still mails no password."""
    from django.core import mail
    from django.utils import timezone

    from integrations.attention import attention_mail
    from tests.mail import use_mail_backend

    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    world.control.add_fault("http500", "AddPayment", count=1)
    with deliver():
        world.pay("001-01-101-1", "34.00")
    assert Posting.objects.get().state == "unconfirmed"
    # Written as it is, not through the pause (which masks it too): the mail masks on its own.
    Connection.objects.update(
        paused_at=timezone.now(), paused_reason=f"refused <Password>{PASSWORD}</Password>"
    )
    mail.outbox = []
    assert attention_mail() == 2  # the posting and the pause
    (message,) = mail.outbox
    assert PASSWORD not in message.subject + message.body
    assert MASK in message.body
