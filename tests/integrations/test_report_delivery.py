"""Batch Deposit Report emails are delivered at least once (integrations.reports).

No SMTP server can run here, so the mail server is a test double: Django's locmem backend
(messages land in ``mail.outbox``) subclassed to refuse the first N sends the way a real SMTP
connection fails (``SMTPServerDisconnected``), or to stop the worker mid-send. It also records
the timeout each connection was opened with.
"""

from __future__ import annotations

import smtplib
import threading
import time

import django
import pytest
from django.core import mail
from django.core.mail.backends import locmem
from django.test import Client
from django.urls import reverse
from django.utils.module_loading import import_string

from rentplatform import services
from rentplatform.mail_settings import has_mailers
from tests.factories import lease_with_resident, staff_user
from tests.mail import use_mail_backend

pytestmark = pytest.mark.django_db

BACKEND = f"{__name__}.FlakyBackend"


class WorkerStopped(BaseException):
    """What a worker killed mid-send looks like from inside: not an ``Exception``."""


class FlakyBackend(locmem.EmailBackend):
    fail_next = 0  # refuse this many sends
    stop_next = 0  # stop the worker during this many sends
    sends = 0  # sends tried (accepted or not)
    during_send = None  # called inside a send, before the message is accepted
    timeouts: list = []

    def __init__(self, *args, timeout=None, **kwargs):
        self.timeout = timeout  # as the SMTP backend's: what the connection would open with
        super().__init__(*args, **kwargs)

    def send_messages(self, messages):
        FlakyBackend.timeouts.append(self.timeout)
        FlakyBackend.sends += 1
        if FlakyBackend.during_send:
            FlakyBackend.during_send()
        if FlakyBackend.stop_next:
            FlakyBackend.stop_next -= 1
            raise WorkerStopped
        if FlakyBackend.fail_next:
            FlakyBackend.fail_next -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def flaky_mail(settings):
    use_mail_backend(settings, BACKEND)
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "REPORT_RETRY_BACKOFF_SECONDS": [0]}
    FlakyBackend.fail_next = FlakyBackend.stop_next = FlakyBackend.sends = 0
    FlakyBackend.during_send = None
    FlakyBackend.timeouts = []
    yield FlakyBackend
    FlakyBackend.during_send = None


def deposited_batch(capture, *, run_task=True):
    """A card payment of 100.00, settled and deposited; the deposit's task runs (or not)."""
    lease, resident = lease_with_resident()
    payment = services.accept_payment(lease, "100.00", "card", resident=resident)
    services.settle_payment(payment)
    with capture(execute=run_task):
        services.deposit_batch(payment.batch)
    return payment.batch


def run_schedule():
    """Run the report schedule's task the way django-q2 would: by its dotted path."""
    from integrations.schedules import wanted

    specs = [s for s in wanted() if s["name"] == "integrations.report_delivery"]
    assert specs, "no schedule retries Batch Deposit Report emails"
    assert specs[0]["minutes"] == 5
    return import_string(specs[0]["func"])()


def delivery_of(batch):
    from integrations.models import ReportDelivery

    return ReportDelivery.objects.get(batch=batch)


def test_an_smtp_failure_is_retried_by_the_schedule_and_sent_once(
    flaky_mail, django_capture_on_commit_callbacks
):
    flaky_mail.fail_next = 2
    batch = deposited_batch(django_capture_on_commit_callbacks)
    assert mail.outbox == []
    first = delivery_of(batch)
    assert first.sent_at is None
    assert first.attempts == 1 and first.state == "retrying"
    assert "SMTPServerDisconnected: Connection unexpectedly closed" in first.last_error
    assert first.last_attempt_at is not None

    run_schedule()  # second attempt: refused again
    assert mail.outbox == [] and delivery_of(batch).attempts == 2
    run_schedule()  # third: sent
    run_schedule()  # nothing left to do
    assert len(mail.outbox) == 1
    assert batch.batch_id in mail.outbox[0].subject
    done = delivery_of(batch)
    assert done.state == "sent" and done.sent_at is not None and done.attempts == 3
    assert done.last_error == ""
    assert flaky_mail.sends == 3


def test_the_mail_connection_is_opened_with_a_timeout(
    flaky_mail, settings, django_capture_on_commit_callbacks
):
    """rentplatform/settings.py sets no mail timeout: the report's connection gets 30 s
    (REPORT_EMAIL_TIMEOUT_SECONDS); the project's own wins (EMAIL_TIMEOUT before Django 6.1,
    the mailer's ``timeout`` option from 6.1)."""
    deposited_batch(django_capture_on_commit_callbacks)
    use_mail_backend(settings, BACKEND, timeout=12)
    deposited_batch(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2
    assert flaky_mail.timeouts == [30, 12]


@pytest.mark.skipif(not has_mailers(django.VERSION), reason="MAILERS: Django 6.1 and later")
def test_reports_go_through_the_report_mailer_alias(
    flaky_mail, settings, django_capture_on_commit_callbacks
):
    """REPORT_MAILER names the MAILERS alias (Django 6.1+); an alias MAILERS does not have is a
    failed attempt that says so, retried, not a lost report."""
    settings.MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.dummy.EmailBackend"},
        "reports": {"BACKEND": BACKEND, "OPTIONS": {"timeout": 7}},
    }
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "REPORT_MAILER": "reports"}
    deposited_batch(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1 and flaky_mail.timeouts == [7]

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "REPORT_MAILER": "nowhere"}
    batch = deposited_batch(django_capture_on_commit_callbacks)
    delivery = delivery_of(batch)
    assert delivery.state == "retrying" and "nowhere" in delivery.last_error
    assert len(mail.outbox) == 1


def test_retries_back_off_and_stop_after_the_bounded_attempts(
    flaky_mail, settings, django_capture_on_commit_callbacks
):
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "REPORT_RETRY_BACKOFF_SECONDS": [60, 300],
        "REPORT_MAX_ATTEMPTS": 3,
    }
    flaky_mail.fail_next = 100
    batch = deposited_batch(django_capture_on_commit_callbacks)
    d = delivery_of(batch)
    wait = (d.next_attempt_at - d.last_attempt_at).total_seconds()
    assert 59 <= wait <= 61
    assert run_schedule() == 0  # not due yet: backoff
    assert flaky_mail.sends == 1
    from integrations.models import ReportDelivery

    for _ in range(5):
        ReportDelivery.objects.filter(pk=d.pk).update(next_attempt_at=d.created_at)
        run_schedule()
    d = delivery_of(batch)
    assert flaky_mail.sends == 3 and d.attempts == 3
    assert d.state == "failed" and d.sent_at is None
    assert d.last_error.startswith("gave up after 3 attempts: SMTPServerDisconnected")
    assert "FAILED" in d.status_text


def test_a_send_interrupted_by_a_stopped_worker_is_sent_again(
    flaky_mail, settings, django_capture_on_commit_callbacks
):
    """At least once: the claim of a worker that stopped mid-send expires (here at once) and
    the schedule sends the report again."""
    from integrations.reports import send_report

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "CLAIM_SECONDS": 0}
    batch = deposited_batch(django_capture_on_commit_callbacks, run_task=False)
    flaky_mail.stop_next = 1
    with pytest.raises(WorkerStopped):
        send_report(batch.pk)
    assert mail.outbox == []
    time.sleep(0.01)
    run_schedule()
    run_schedule()
    assert len(mail.outbox) == 1
    assert delivery_of(batch).sent_at is not None


def test_a_lost_deposit_task_is_made_up_by_the_schedule(
    flaky_mail, django_capture_on_commit_callbacks
):
    batch = deposited_batch(django_capture_on_commit_callbacks, run_task=False)
    run_schedule()
    assert len(mail.outbox) == 1
    assert delivery_of(batch).state == "sent"


def test_a_second_sender_during_a_send_sends_nothing(
    flaky_mail, django_capture_on_commit_callbacks
):
    """While one worker is inside the send, another (the schedule, a repeated task) finds the
    claim and leaves the report alone."""
    from integrations.reports import send_report

    batch = deposited_batch(django_capture_on_commit_callbacks, run_task=False)
    inner: list = []

    def second_sender():
        FlakyBackend.during_send = None
        inner.append(send_report(batch.pk))
        inner.append(run_schedule())

    flaky_mail.during_send = second_sender
    assert send_report(batch.pk) is True
    assert inner == [False, 0]
    assert len(mail.outbox) == 1 and flaky_mail.sends == 1
    assert send_report(batch.pk) is False  # a repeated task after the send
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_senders_send_once(flaky_mail, django_capture_on_commit_callbacks):
    """Four threads (four database connections) try to claim the same failing report at the
    same moment after a failure; exactly one claim wins, and only its holder sends.

    The in-memory SQLite test database shares one cache between connections and reports a
    table lock at once ("database table is locked") where the file database waits for it
    (busy timeout, settings.py): a claim refused that way changed nothing (one UPDATE
    statement), so the thread tries it again, as the busy timeout would. The sends wait until
    every thread has claimed, so only the claim runs concurrently in this shared-cache test.
    """
    from django.db import OperationalError
    from django.db import connection as db_connection

    from integrations.reports import claim, send_claimed

    flaky_mail.fail_next = 1
    batch = deposited_batch(django_capture_on_commit_callbacks)
    delivery = delivery_of(batch)
    assert delivery.state == "retrying"
    start, claimed = threading.Barrier(4), threading.Barrier(4)
    results: list = []

    def sender():
        won = None
        try:
            start.wait(timeout=10)
            for _ in range(500):
                try:
                    won = claim(delivery.pk)
                    break
                except OperationalError as err:
                    assert "locked" in str(err)
                    time.sleep(0.005)
            assert won is not None, "the table stayed locked"
            claimed.wait(timeout=10)
            results.append(send_claimed(delivery.pk) if won else False)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(mail.outbox) == 1
    assert flaky_mail.sends == 2  # the failed first send and one of the four
    d = delivery_of(batch)
    assert d.state == "sent" and d.attempts == 2


def test_admin_list_shows_the_delivery_state_and_a_person_can_send_again(
    flaky_mail, settings, django_capture_on_commit_callbacks
):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "REPORT_MAX_ATTEMPTS": 1}
    flaky_mail.fail_next = 1
    failed = deposited_batch(django_capture_on_commit_callbacks)
    sent = deposited_batch(django_capture_on_commit_callbacks)
    assert delivery_of(failed).state == "failed"
    assert delivery_of(sent).state == "sent"
    url = reverse("admin:integrations_depositreport_changelist")

    viewer = Client()
    viewer.force_login(staff_user("integrations.view_depositreport"))
    page = viewer.get(url).content.decode()
    assert "Report email" in page
    assert "FAILED: gave up after 1 attempts: SMTPServerDisconnected" in page
    assert "sent " in page
    only_failed = viewer.get(url, {"report_email": "not_sent"}).content.decode()
    assert failed.batch_id in only_failed and sent.batch_id not in only_failed
    assert "send_again" not in page  # no permission, no action
    refused = viewer.post(
        url, {"action": "send_again", "_selected_action": [failed.pk], "index": 0}
    )
    assert refused.status_code in (200, 302)
    assert delivery_of(failed).state == "failed"

    person = Client()
    person.force_login(staff_user("integrations.view_depositreport", "integrations.resend_report"))
    assert "send_again" in person.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = person.post(
            url, {"action": "send_again", "_selected_action": [failed.pk], "index": 0}
        )
    assert response.status_code == 302
    assert delivery_of(failed).state == "sent"
    assert len(mail.outbox) == 2  # the other batch's report and this one, once each


def test_a_property_without_manager_emails_shows_a_failed_delivery(
    flaky_mail, django_capture_on_commit_callbacks
):
    lease, resident = lease_with_resident()
    prop = lease.unit.building.property
    prop.manager_emails = ""
    prop.save()
    payment = services.accept_payment(lease, "10.00", "card", resident=resident)
    services.settle_payment(payment)
    with django_capture_on_commit_callbacks(execute=True):
        services.deposit_batch(payment.batch)
    d = delivery_of(payment.batch)
    assert d.state == "failed" and "no manager emails" in d.last_error
    run_schedule()
    assert mail.outbox == [] and flaky_mail.sends == 0
