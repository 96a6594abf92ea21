"""Paying and voiding exactly once: idempotency keys, and no HTTP 500 once the work committed.

A resident whose reply was lost (the broker down, a timeout, a double click) sends the same
request again with the same key: the portal's pay form carries one in a hidden field (generated
when the form is rendered), the API takes an ``Idempotency-Key`` header (or the body's
``idempotency_key``). The retry returns the first result (the same payment, the same status code
and body shape) and never makes a second payment. Keys belong to the resident (or, for voids,
the user) who sent them; a key reused for a different request is refused (422) with a message
saying so.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations.models import Connection, Posting
from rentplatform import signals
from rentplatform.models import Payment, PaymentState, Reversal
from rentplatform.services import accept_payment
from tests.factories import LeaseFactory, LeaseResidentFactory, lease_with_resident

pytestmark = pytest.mark.django_db

KEY = re.compile(r'name="idempotency_key" value="([0-9a-f]{32})"')


def pay_url(lease) -> str:
    return reverse("api:lease-payments", args=[lease.pk])


def api_for(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def api_pay(client: APIClient, lease, amount="125.00", key: str | None = "key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    body = {"amount": amount, "method": "card", **extra}
    return client.post(pay_url(lease), body, format="json", **headers)


def portal_for(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def portal_pay(client: Client, lease, key: str, amount="125.00"):
    url = reverse("portal:pay", args=[lease.pk])
    return client.post(url, {"amount": amount, "method": "card", "idempotency_key": key})


def flash(response) -> list[str]:
    """The messages this request added (not ones left over from an earlier request)."""
    return [str(m) for m in response.wsgi_request._messages._queued_messages]


# -- the portal ----------------------------------------------------------------------------------


def test_pay_form_renders_a_fresh_hidden_key(leased, resident_client):
    lease, _ = leased
    url = reverse("portal:pay", args=[lease.pk])
    first = KEY.findall(resident_client.get(url).content.decode())
    second = KEY.findall(resident_client.get(url).content.decode())
    assert len(first) == len(second) == 1
    assert first != second
    assert 'type="hidden" name="idempotency_key"' in resident_client.get(url).content.decode()


def test_portal_resubmitted_form_is_one_payment_and_the_same_success(leased):
    lease, resident = leased
    client = portal_for(resident.user)
    key = KEY.findall(client.get(reverse("portal:pay", args=[lease.pk])).content.decode())[0]
    first = portal_pay(client, lease, key)
    again = portal_pay(client, lease, key)
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == reverse("portal:lease", args=[lease.pk])
    assert flash(first) == flash(again)
    assert "accepted" in flash(first)[0]
    assert Payment.objects.count() == 1


def test_portal_key_reused_with_another_amount_is_refused_with_a_new_form(leased):
    lease, resident = leased
    client = portal_for(resident.user)
    assert portal_pay(client, lease, "k" * 32).status_code == 302
    response = portal_pay(client, lease, "k" * 32, amount="99.00")
    assert response.status_code == 422
    html = response.content.decode()
    assert "already used for a payment of $125.00" in html
    # A fresh key, so that sending the corrected form makes the new payment.
    (fresh,) = KEY.findall(html)
    assert fresh != "k" * 32
    assert portal_pay(client, lease, fresh, amount="99.00").status_code == 302
    assert sorted(Payment.objects.values_list("amount", flat=True)) == [
        Decimal("99.00"),
        Decimal("125.00"),
    ]


def test_portal_key_belongs_to_the_resident_who_sent_it(leased):
    lease, payer = leased
    roommate = LeaseResidentFactory(lease=lease).resident
    assert portal_pay(portal_for(payer.user), lease, "same-key").status_code == 302
    response = portal_pay(portal_for(roommate.user), lease, "same-key")
    assert response.status_code == 302
    assert sorted(Payment.objects.values_list("resident_id", flat=True)) == sorted(
        [payer.pk, roommate.pk]
    )


def test_portal_void_resubmitted_is_the_same_success(leased):
    lease, resident = leased
    payment = accept_payment(lease, "20.00", "card", resident=resident)
    client = portal_for(resident.user)
    page = client.get(reverse("portal:lease", args=[lease.pk])).content.decode()
    (key,) = KEY.findall(page)
    url = reverse("portal:void", args=[payment.public_id])
    first = client.post(url, {"idempotency_key": key})
    again = client.post(url, {"idempotency_key": key})
    assert first.status_code == again.status_code == 302
    assert flash(first) == flash(again) == ["Payment of $20.00 voided."]
    assert Reversal.objects.count() == 1
    # Without the key, a second void is what it is: refused, the payment is already voided.
    refused = client.post(url)
    assert "only a processing payment can be voided" in flash(refused)[0]


# -- the API -------------------------------------------------------------------------------------


def test_api_header_key_replays_the_first_result(leased):
    lease, resident = leased
    client = api_for(resident.user)
    first = api_pay(client, lease)
    again = api_pay(client, lease)
    assert first.status_code == again.status_code == 201, again.content
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Payment.objects.count() == 1


def test_api_body_key_replays_with_the_same_status(leased):
    lease, resident = leased
    client = api_for(resident.user)
    first = api_pay(client, lease, key=None, idempotency_key="abc-1")
    again = api_pay(client, lease, key=None, idempotency_key="abc-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert Payment.objects.count() == 1


def test_api_replay_after_the_lease_was_blocked_still_returns_the_payment(leased):
    from rentplatform.services import block_lease

    lease, resident = leased
    client = api_for(resident.user)
    first = api_pay(client, lease)
    block_lease(lease, "Legal hold")
    again = api_pay(client, lease)
    assert again.status_code == 201 and again.json() == first.json()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"amount": "99.00"}, "$125.00"),
        ({"method": "ach"}, "by card"),
    ],
)
def test_api_key_reused_for_another_request_is_422(leased, change, needle):
    lease, resident = leased
    client = api_for(resident.user)
    assert api_pay(client, lease).status_code == 201
    response = client.post(
        pay_url(lease),
        {"amount": "125.00", "method": "card", **change},
        format="json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "idempotency_key_reused"
    assert "already used" in body["detail"] and needle in body["detail"]
    assert Payment.objects.count() == 1


def test_api_key_reused_on_another_lease_is_422(leased):
    lease, resident = leased
    other = LeaseFactory()
    LeaseResidentFactory(lease=other, resident=resident)
    client = api_for(resident.user)
    assert api_pay(client, lease).status_code == 201
    response = api_pay(client, other)
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert f"lease #{lease.pk}" in response.json()["detail"]
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("via", ["header", "body"])
def test_api_key_belongs_to_the_resident_who_sent_it(leased, via):
    lease, payer = leased
    roommate = LeaseResidentFactory(lease=lease).resident
    stranger_lease, stranger = lease_with_resident()

    def pay(user, target):
        if via == "header":
            return api_pay(api_for(user), target, key="shared")
        return api_pay(api_for(user), target, key=None, idempotency_key="shared")

    mine = pay(payer.user, lease)
    # The roommate and a stranger on another lease happen to send the same key: each gets
    # their own new payment, never the payer's result and never a refusal that tells them the
    # key exists.
    roommates = pay(roommate.user, lease)
    strangers = pay(stranger.user, stranger_lease)
    assert mine.status_code == roommates.status_code == strangers.status_code == 201
    ids = {mine.json()["id"], roommates.json()["id"], strangers.json()["id"]}
    assert len(ids) == 3
    assert Payment.objects.count() == 3


@pytest.mark.parametrize(
    ("headers", "body_key", "needle"),
    [
        ({"HTTP_IDEMPOTENCY_KEY": "a"}, "b", "differ"),
        ({"HTTP_IDEMPOTENCY_KEY": "k" * 65}, None, "64"),
        ({"HTTP_IDEMPOTENCY_KEY": "   "}, None, "empty"),
        ({"HTTP_IDEMPOTENCY_KEY": "bad key"}, None, "printable"),
    ],
)
def test_api_bad_keys_are_400(leased, headers, body_key, needle):
    lease, resident = leased
    body = {"amount": "1.00", "method": "card"}
    if body_key:
        body["idempotency_key"] = body_key
    response = api_for(resident.user).post(pay_url(lease), body, format="json", **headers)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert needle in response.json()["detail"]
    assert not Payment.objects.exists()


def test_api_void_replays_the_first_result(leased):
    lease, resident = leased
    client = api_for(resident.user)
    payment_id = api_pay(client, lease).json()["id"]
    url = reverse("api:payment-void", args=[payment_id])
    first = client.post(url, HTTP_IDEMPOTENCY_KEY="void-1")
    again = client.post(url, HTTP_IDEMPOTENCY_KEY="void-1")
    assert first.status_code == again.status_code == 200, again.content
    assert first.json() == again.json()
    assert first.json()["state"] == "voided"
    assert again["Idempotent-Replayed"] == "true"
    assert Reversal.objects.count() == 1
    # A new key (a new request) is refused: the payment is already voided.
    assert client.post(url, HTTP_IDEMPOTENCY_KEY="void-2").status_code == 409


def test_api_void_key_reused_for_another_payment_is_422(leased):
    lease, resident = leased
    client = api_for(resident.user)
    one = api_pay(client, lease, key="p1").json()["id"]
    two = api_pay(client, lease, key="p2").json()["id"]
    assert (
        client.post(
            reverse("api:payment-void", args=[one]), HTTP_IDEMPOTENCY_KEY="void-1"
        ).status_code
        == 200
    )
    response = client.post(reverse("api:payment-void", args=[two]), HTTP_IDEMPOTENCY_KEY="void-1")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.get(reference=two.replace("-", "")).state == PaymentState.PROCESSING


def test_processor_key_reused_for_another_amount_is_refused(leased):
    from io import StringIO

    from django.core.management import CommandError, call_command

    lease, _ = leased
    args = ["processor", "pay", "--lease", str(lease.pk), "--method", "card"]
    call_command(*args, "--amount", "10.00", "--idempotency-key", "batch-7", stdout=StringIO())
    call_command(*args, "--amount", "10.00", "--idempotency-key", "batch-7", stdout=StringIO())
    assert Payment.objects.count() == 1
    with pytest.raises(CommandError, match="already used"):
        call_command(*args, "--amount", "11.00", "--idempotency-key", "batch-7")
    assert Payment.objects.count() == 1


# -- errors after the commit ---------------------------------------------------------------------


@pytest.fixture
def failing_after_commit():
    """A receiver whose on-commit work fails (a broker that is down, a bug in a hook)."""
    ran = []

    def boom():
        ran.append(True)
        raise ConnectionError("broker down")

    def receiver(sender, **kwargs):
        transaction.on_commit(boom)

    for signal in (signals.payment_accepted, signals.payment_voided):
        signal.connect(receiver, dispatch_uid="test-failing-after-commit")
    yield ran
    for signal in (signals.payment_accepted, signals.payment_voided):
        signal.disconnect(dispatch_uid="test-failing-after-commit")


@pytest.mark.django_db(transaction=True)
def test_api_error_after_commit_is_the_payment_not_a_500(failing_after_commit, caplog):
    lease, resident = lease_with_resident()
    client = api_for(resident.user)
    response = api_pay(client, lease)
    assert failing_after_commit, "the failing hook ran (the transaction really committed)"
    assert response.status_code == 201, response.content[:300]
    assert Payment.objects.get().public_id == response.json()["id"]
    assert "broker down" in caplog.text  # logged, with what failed
    again = api_pay(client, lease)
    assert again.status_code == 201 and again.json() == response.json()
    void = client.post(
        reverse("api:payment-void", args=[response.json()["id"]]), HTTP_IDEMPOTENCY_KEY="v"
    )
    assert void.status_code == 200 and void.json()["state"] == "voided"
    assert Payment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_portal_error_after_commit_is_the_payment_not_a_500(failing_after_commit):
    lease, resident = lease_with_resident()
    client = portal_for(resident.user)
    first = portal_pay(client, lease, "form-key")
    assert failing_after_commit
    assert first.status_code == 302, first.status_code
    assert "accepted" in flash(first)[0]
    payment = Payment.objects.get()
    # The resident did not see the success and sends the form again: the same payment.
    again = portal_pay(client, lease, "form-key")
    assert again.status_code == 302 and flash(again) == flash(first)
    void = client.post(reverse("portal:void", args=[payment.public_id]))
    assert void.status_code == 302 and flash(void) == ["Payment of $125.00 voided."]
    assert Payment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_broker_down_when_the_payment_is_taken(settings, monkeypatch):
    """The outbox queues the posting's task on commit; the broker refuses it. The payment and its
    posting are committed (the retry sweep sends it later), the resident sees success, and their
    retry is the same payment."""
    import django_q.tasks

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async"}

    def broker_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(django_q.tasks, "async_task", broker_down)
    lease, resident = lease_with_resident()
    Connection.objects.create(property=lease.property, provider="fake")
    client = api_for(resident.user)
    first = api_pay(client, lease)
    assert first.status_code == 201, first.content[:300]
    again = api_pay(client, lease)
    assert again.status_code == 201 and again.json() == first.json()
    assert Payment.objects.count() == 1
    assert Posting.objects.filter(payment__reference=first.json()["id"]).count() == 1


# -- concurrent retries (PostgreSQL: real row locks and unique indexes) --------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_lease", [True, False], ids=["same-lease", "other-lease"])
def test_concurrent_requests_with_one_key(same_lease):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite runs one write transaction at a time")
    lease, resident = lease_with_resident()
    other = lease
    if not same_lease:
        other = LeaseFactory()
        LeaseResidentFactory(lease=other, resident=resident)
    barrier = threading.Barrier(2)
    results: list = []

    def send(target) -> None:
        try:
            client = api_for(resident.user)
            barrier.wait(5)
            results.append(api_pay(client, target, key="race"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(t,)) for t in (lease, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    codes = sorted(r.status_code for r in results)
    assert Payment.objects.count() == 1
    if same_lease:
        assert codes == [201, 201]
        assert results[0].json() == results[1].json()
    else:
        assert codes == [201, 422], [r.content for r in results]
