"""The managers are told what waits for them (integrations/attention.py): postings that need a
person are mailed once per change, by the schedule, through the reports' mail path.

The mail server is Django's locmem backend (``mail.outbox``), subclassed to refuse a send the
way a real SMTP connection fails: no SMTP server runs here.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends import locmem
from django.utils import timezone
from django.utils.module_loading import import_string

from integrations import outbox
from integrations.models import Connection, Posting, PostingState
from integrations.providers.fake import FakeProvider
from rentplatform import services
from tests.mail import use_mail_backend

pytestmark = pytest.mark.django_db

BACKEND = f"{__name__}.RefusingBackend"


class RefusingBackend(locmem.EmailBackend):
    refuse_next = 0

    def send_messages(self, messages):
        if RefusingBackend.refuse_next:
            RefusingBackend.refuse_next -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def mailer(settings):
    use_mail_backend(settings, BACKEND)
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    RefusingBackend.refuse_next = 0
    mail.outbox = []
    return RefusingBackend


def run_schedule() -> int:
    """The schedule's task, run the way django-q2 runs it: by its dotted path."""
    from integrations.schedules import wanted

    (spec,) = [s for s in wanted() if s["name"] == "integrations.attention_mail"]
    assert spec["minutes"] == 15
    return import_string(spec["func"])()


def refused(connection, lease, amount="100.00"):
    """A payment whose posting the remote refused: it needs attention."""
    connection.settings = {"fail": {"mode": "permanent", "count": 1}}
    connection.save()
    payment = services.accept_payment(lease, amount, "card")
    posting = Posting.objects.get(payment=payment, kind="payment")
    assert outbox.deliver(posting.pk) == PostingState.NEEDS_ATTENTION
    posting.refresh_from_db()
    return posting


def test_a_refused_payment_is_mailed_to_the_property_managers_once(connection, lease):
    posting = refused(connection, lease)
    assert run_schedule() == 1
    (message,) = mail.outbox
    assert message.to == ["manager@example.test", "office@example.test"]
    assert message.subject == (
        f"{lease.property.name}: 1 posting to the fake remote waits for a person"
    )
    body = message.body
    assert f"Payment {posting.payment.short_id} of 100.00 by Card" in body
    assert "needs attention" in body
    assert "What happened: " in body and "What to do: " in body
    assert f"/admin/integrations/posting/{posting.pk}/change/" in body
    assert "state__exact=needs_attention" in body
    # Mailed once: nothing new, nothing sent.
    assert run_schedule() == 0
    assert len(mail.outbox) == 1


def test_a_posting_that_changed_is_mailed_again_and_the_others_are_counted(connection, lease):
    first = refused(connection, lease, "100.00")
    second = refused(connection, lease, "200.00")
    assert run_schedule() == 2
    assert "2 postings to the fake remote wait for a person" in mail.outbox[0].subject
    # A person retries the first; the remote refuses it again.
    connection.settings = {"fail": {"mode": "permanent", "count": 1}}
    connection.save()
    outbox.retry(first)
    assert outbox.deliver(first.pk) == PostingState.NEEDS_ATTENTION
    assert run_schedule() == 1
    again = mail.outbox[1]
    assert first.payment.short_id in again.body
    assert second.payment.short_id not in again.body
    assert "Still waiting from earlier mails: 1 (unchanged since)." in again.body


def test_an_unconfirmed_posting_is_mailed_and_a_posted_one_is_not(connection, lease, monkeypatch):
    monkeypatch.setattr(FakeProvider, "checks_unknown_outcomes", lambda self, posting=None: False)
    connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
    connection.save()
    lost = Posting.objects.get(payment=services.accept_payment(lease, "100.00", "card"))
    assert outbox.deliver(lost.pk) == PostingState.UNCONFIRMED
    fine = Posting.objects.get(payment=services.accept_payment(lease, "50.00", "card"))
    assert outbox.deliver(fine.pk) == PostingState.POSTED
    assert run_schedule() == 1
    body = mail.outbox[0].body
    assert lost.payment.short_id in body and "unconfirmed" in body
    assert fine.payment.short_id not in body


def test_a_mail_server_that_fails_marks_nothing_and_the_next_run_sends(
    connection, lease, mailer, caplog
):
    posting = refused(connection, lease)
    mailer.refuse_next = 1
    with caplog.at_level(logging.WARNING, logger="integrations.attention"):
        assert run_schedule() == 0
    assert "was not sent (SMTPServerDisconnected" in caplog.text
    assert mail.outbox == []
    assert Posting.objects.get(pk=posting.pk).attention_mailed_at is None
    assert run_schedule() == 1
    assert len(mail.outbox) == 1


def test_a_property_without_manager_emails_is_skipped_saying_so(connection, lease, caplog):
    lease.property.manager_emails = ""
    lease.property.save()
    refused(connection, lease)
    with caplog.at_level(logging.WARNING, logger="integrations.attention"):
        assert run_schedule() == 0
    assert "has no manager emails to tell" in caplog.text
    assert mail.outbox == []


def test_links_are_absolute_with_the_console_url(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "CONSOLE_URL": "https://pay.example.com/"}
    posting = refused(connection, lease)
    run_schedule()
    assert (
        f"https://pay.example.com/admin/integrations/posting/{posting.pk}/change/"
        in mail.outbox[0].body
    )


def test_the_schedule_is_off_at_zero_minutes(settings):
    from django_q.models import Schedule

    from integrations.schedules import ensure_schedules

    ensure_schedules()
    assert Schedule.objects.get(name="integrations.attention_mail").minutes == 15
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "ATTENTION_MAIL_MINUTES": 0}
    assert ("integrations.attention_mail", "removed (0 minutes: off)") in ensure_schedules()
    assert not Schedule.objects.filter(name="integrations.attention_mail").exists()
    assert Schedule.objects.filter(name="integrations.retry_sweep").exists()


def test_a_paused_connection_is_mailed_once_per_pause(connection, lease):
    """A refused login pauses the connection (every posting waits, none needs attention on
    its own): the managers are told once, and again after a later pause."""
    outbox.pause_connection(connection, "bad login for user edex_demo")
    assert run_schedule() == 1
    (message,) = mail.outbox
    assert message.subject == f"{lease.property.name}: the connection to the fake remote is paused"
    assert "its login refused: bad login for user edex_demo. Nothing is sent" in message.body
    assert "run 'Test connection'" in message.body
    assert f"/admin/integrations/connection/{connection.pk}/change/" in message.body
    assert run_schedule() == 0
    outbox.resume_connection(connection)
    refused_too = refused(Connection.objects.get(pk=connection.pk), lease)
    outbox.pause_connection(connection, "bad login again")
    assert run_schedule() == 2
    again = mail.outbox[1]
    assert again.subject == (
        f"{lease.property.name}: the connection to the fake remote is paused, and 1 posting to "
        "the fake remote waits for a person"
    )
    assert "bad login again" in again.body and refused_too.payment.short_id in again.body


def test_a_reversal_stopped_by_its_payment_is_listed_as_a_reversal(connection, lease):
    paid = refused(connection, lease)
    void = Posting.objects.get(reversal=services.void_payment(paid.payment))
    assert outbox.deliver(void.pk) == PostingState.NEEDS_ATTENTION  # its payment needs a person
    assert run_schedule() == 2
    body = mail.outbox[0].body
    reversal = void.reversal
    assert f"Void {reversal.short_id} of -100.00 (payment {paid.payment.short_id})" in body
    assert f"/admin/integrations/posting/{void.pk}/change/" in body


def _runs(connection, *statuses_minutes_ago):
    """Finished resync runs, (status, minutes ago) each."""
    from integrations.models import SyncKind, SyncRun

    now = timezone.now()
    for status, ago in statuses_minutes_ago:
        started = now - dt.timedelta(minutes=ago)
        SyncRun.objects.create(
            connection=connection,
            kind=SyncKind.DELTA,
            status=status,
            started_at=started,
            finished_at=started + dt.timedelta(seconds=2),
            message="the remote could not be reached: timed out" if status == "failed" else "",
        )


def test_resyncs_failing_for_an_hour_are_mailed_once_per_streak(connection, lease, settings):
    _runs(connection, ("succeeded", 200), ("failed", 70), ("failed", 40), ("failed", 5))
    assert run_schedule() == 1
    (message,) = mail.outbox
    assert message.subject == f"{lease.property.name}: resyncs from the fake remote are failing"
    body = message.body
    assert "have failed since" in body and "3 in a row" in body
    assert "the last said: the remote could not be reached: timed out" in body
    assert "a lease blocked in the fake remote can still be paid online" in body
    assert "/admin/integrations/syncrun/" in body
    _runs(connection, ("failed", 1))
    assert run_schedule() == 0  # the same streak: told already
    # One succeeds, then a new streak: told again once it is old enough (here at once).
    _runs(connection, ("succeeded", 0.9), ("failed", 0.5))
    assert run_schedule() == 0  # half a minute old
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "SYNC_FAILURE_MAIL_MINUTES": 0}
    assert run_schedule() == 1
    assert "1 in a row" in mail.outbox[1].body


def test_a_failure_younger_than_the_limit_or_followed_by_a_success_is_not_mailed(connection, lease):
    _runs(connection, ("succeeded", 200), ("failed", 50), ("failed", 5))
    assert run_schedule() == 0
    _runs(connection, ("failed", 300), ("failed", 120), ("partial", 3))
    assert run_schedule() == 0  # the last one read eSite
    assert mail.outbox == []


def test_a_paused_connection_is_said_as_the_pause_not_as_failing_resyncs(connection, lease):
    _runs(connection, ("failed", 120), ("failed", 5))
    outbox.pause_connection(connection, "bad login")
    assert run_schedule() == 1
    assert mail.outbox[0].subject.endswith("the connection to the fake remote is paused")
    assert "resyncs" not in mail.outbox[0].body


def test_a_full_save_of_a_connection_read_earlier_keeps_the_pause_and_its_mail_mark(
    connection, lease
):
    """The admin's form (or a settings change) saves a row it read before the pause and the
    mail: the pause stays, and it is not mailed again."""
    read_before = Connection.objects.get(pk=connection.pk)
    outbox.pause_connection(connection, "bad login for user edex_demo")
    assert run_schedule() == 1
    read_before.settings = {**read_before.settings, "note": "edited in the admin"}
    read_before.save()
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.settings["note"] == "edited in the admin"
    assert stored.paused_at is not None and "bad login" in stored.paused_reason
    assert stored.pause_mailed_at is not None
    assert run_schedule() == 0
    assert len(mail.outbox) == 1
