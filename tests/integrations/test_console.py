"""The posting console: for each reason a posting waits for a person, the page says what
happened and what to do, offers the actions that fit (each behind its own permission, each
recorded), and no action can post twice or lose a posting. Through the Django test client
against the real pages; eSite's codes against the sandbox over loopback HTTP, the framework's
own reasons with the fake provider."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from integrations import outbox
from integrations.models import Connection, FakeRemoteEntry, Posting, PostingState
from integrations.models.posting import AttemptOutcome
from integrations.providers.fake import FakeProvider
from integrations_amsi import advice as amsi_advice
from integrations_amsi import errors
from integrations_amsi.client import clear_clients
from integrations_amsi.models import AmsiLeaseLink
from rentplatform import services
from rentplatform.models import PaymentMethod
from tests.factories import lease_with_resident, staff_user

CHANGELIST = reverse("admin:integrations_posting_changelist")
ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"
VIEW = ("integrations.view_posting",)
EVERY_ACTION = (
    *VIEW,
    "integrations.retry_posting",
    "integrations.resolve_unconfirmed",
    "integrations.resolve_posting",
    "integrations.abandon_posting",
)


def client_for(*perms: str, username: str = "") -> Client:
    client = Client()
    client.force_login(staff_user(*perms, **({"username": username} if username else {})))
    return client


def page(client: Client, posting: Posting) -> str:
    response = client.get(reverse("admin:integrations_posting_change", args=[posting.pk]))
    assert response.status_code == 200
    return response.content.decode()


def act(client: Client, posting: Posting, action: str, **form) -> list[str]:
    """What the console's button posts (the changelist's action, back to the posting)."""
    response = client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [posting.pk],
            "index": "0",
            "apply": "1",
            "_console": "1",
            **form,
        },
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def world(amsi_world):
    return amsi_world


# -- eSite's codes -------------------------------------------------------------------------------
def test_every_code_of_the_error_table_has_an_answer():
    assert set(errors.KNOWN_ERRORS) <= set(amsi_advice.WHAT_TO_DO)


def test_a_refusal_says_the_code_what_it_means_and_what_to_do(world, deliver):
    world.control.patch_lease("001", "01", "102", "2", BlockPaymentAccess="Y")
    with deliver():
        payment = world.pay(OTHER, "50.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.NEEDS_ATTENTION and posting.error_code == "201"
    html = page(client_for(*EVERY_ACTION), posting)
    assert "eSite refused the AddPayment with code 201" in html
    assert "Block Payment Access is set on the lease in AMSI" in html
    assert "a code of the sandbox: real eSite&#x27;s codes other than 1 are not published" in html
    assert "Lift the block in eSite and retry" in html
    # The host payment, its state, the batch it is in (linked); no "outcome unknown".
    assert "Processing</strong> on the platform" in html
    batch_url = reverse("admin:rentplatform_depositbatch_change", args=[payment.batch.pk])
    assert f'href="{batch_url}" class="batch-link">{payment.batch.batch_id}<' in html
    assert "Outcome unknown" not in html
    # The request that was refused is kept, pretty-printed and collapsed.
    assert "<AddPayment" in posting.request_document or "<Payment" in posting.request_document
    assert '<details class="console-document"><summary>Request sent</summary>' in html
    assert "\n  &lt;" in html  # indented
    # The actions that fit: retry, resolve, abandon; not found / post it.
    for name in ("retry_postings", "resolve_postings", "abandon_postings"):
        assert f'id="console-{name}"' in html
    assert 'id="console-mark_found"' not in html


def test_an_unlinked_lease_says_link_it(world, deliver):
    lease = world.lease(OTHER)
    AmsiLeaseLink.objects.filter(lease=lease).delete()
    with deliver():
        payment = services.accept_payment(lease, Decimal("40.00"), "card")
    html = page(client_for(*VIEW), world.posting(payment))
    assert f"lease #{lease.pk} is not linked to an AMSI lease" in html
    assert "with the ResiID), then retry" in html


def test_refused_credentials_say_fix_the_login_then_test(world, deliver):
    world.connection.credentials = {"password": "changed-in-esite"}
    world.connection.save()
    clear_clients()
    with deliver():
        payment = world.pay(ALLOWED, "100.00", "card")
    posting = world.posting(payment)
    assert posting.state in (PostingState.PENDING, PostingState.RETRYING)
    html = page(client_for(*EVERY_ACTION), posting)
    assert "eSite refused the connection&#x27;s login with code 1" in html
    assert "a code seen from a real eSite" in html
    assert "run &#x27;Test connection&#x27;" in html
    assert 'id="console-retry_postings"' not in html  # nothing to do on the posting itself


def test_unconfirmed_says_where_to_look_and_outcome_unknown_only_while_true(world, deliver):
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "300.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED
    client = client_for(*EVERY_ACTION)
    html = page(client, posting)
    assert "may or may not have landed" in html and "Outcome unknown" in html
    assert "Ledger &gt; Cash Batches" in html  # the provider's where_to_look
    said = posting.connection.get_provider().explain(posting).what_to_do
    assert said.count("If it is there") == 1, said  # where to look, then the choice, once
    for name in ("mark_found", "post_unconfirmed", "abandon_postings"):
        assert f'id="console-{name}"' in html
    assert 'id="console-resolve_postings"' not in html  # "found" is the answer here
    receipt = world.entries(payment.batch.batch_id)[0]["evolution_reference"]
    with deliver():
        act(client, posting, "mark_found", receipt=receipt, note="seen in eSite")
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    html = page(client, posting)
    assert "Outcome unknown" not in html and "Found in eSite by" in html


def test_a_malformed_document_is_shown_as_text():
    from integrations.admin.postings import pretty_xml

    assert pretty_xml("<a><b>1</b></a>") == "<a>\n  <b>1</b>\n</a>\n"
    assert pretty_xml("<a><b>cut off") == "<a><b>cut off"
    entity = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    assert "root:" not in pretty_xml(entity)


# -- the framework's reasons (fake provider) -----------------------------------------------------
@pytest.fixture
def fake(db, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual", "MAX_ATTEMPTS": 2}
    lease, _ = lease_with_resident()
    connection = Connection.objects.create(property=lease.property, provider=FakeProvider.id)
    return lease, connection


def _fail(connection: Connection, mode: str, count: int = 1) -> None:
    connection.settings = {"fail": {"mode": mode, "count": count}}
    connection.save()


def _pay(lease, amount: str = "25.00") -> Posting:
    payment = services.accept_payment(lease, Decimal(amount), PaymentMethod.CARD)
    return Posting.objects.get(payment=payment)


def test_gave_up_after_n_attempts(fake):
    lease, connection = fake
    _fail(connection, "retryable", count=2)
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    outbox.deliver(posting.pk)
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION
    html = page(client_for(*VIEW), posting)
    assert "Gave up after 2 attempts" in html and "fake remote is unavailable" in html
    assert "then retry: it gets a fresh set of attempts" in html


def test_a_refusal_with_a_code_the_provider_does_not_explain(fake):
    lease, connection = fake
    _fail(connection, "permanent")
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    html = page(client_for(*VIEW), posting)
    assert "the fake remote refused payment" in html and "with code REFUSED" in html
    assert "enter it in the fake remote by hand and mark it resolved" in html


def test_a_reversal_whose_payment_needs_attention(fake):
    lease, connection = fake
    _fail(connection, "permanent")
    paid = _pay(lease)
    outbox.deliver(paid.pk)
    reversal = services.void_payment(paid.payment)
    posting = Posting.objects.get(reversal=reversal)
    outbox.deliver(posting.pk)
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION
    html = page(client_for(*VIEW), posting)
    assert "This reversal was not sent" in html and "needs attention itself" in html
    assert "If the payment was abandoned (never posted), abandon this reversal too" in html
    assert reverse("admin:integrations_posting_change", args=[paid.pk]) in html
    assert "Voided</strong> on the platform" in html


def test_a_reversal_whose_payment_was_abandoned_stops_at_once(fake):
    """A payment a person abandoned will never be posted: its reversal does not wait the
    3 days for it, it stops for a person at once and says to abandon it too."""
    lease, connection = fake
    _fail(connection, "permanent")
    paid = _pay(lease)
    outbox.deliver(paid.pk)
    outbox.abandon(Posting.objects.get(pk=paid.pk), who="manager", note="voided at the desk")
    reversal = services.void_payment(paid.payment)
    posting = Posting.objects.get(reversal=reversal)
    assert outbox.deliver(posting.pk) == PostingState.NEEDS_ATTENTION
    posting.refresh_from_db()
    assert posting.error_code == outbox.PAYMENT_ABANDONED
    assert posting.last_error.startswith(f"its payment {paid.payment.short_id} will never be")
    assert posting.attempts == 0 and not posting.attempt_log.exists()
    assert not FakeRemoteEntry.objects.filter(key=posting.key).exists()
    html = page(client_for(*VIEW), posting)
    assert "was abandoned by a person" in html and "has nothing to reverse" in html
    assert "Abandon this reversal too" in html


def test_a_reversal_whose_payment_was_never_posted(fake):
    lease, connection = fake
    connection.delete()  # the payment is taken before the property had a connection
    payment = services.accept_payment(lease, Decimal("30.00"), PaymentMethod.CARD)
    connection = Connection.objects.create(property=lease.property, provider=FakeProvider.id)
    reversal = services.void_payment(payment)
    posting = Posting.objects.get(reversal=reversal)
    outbox.deliver(posting.pk)
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION
    html = page(client_for(*VIEW), posting)
    assert f"its payment {payment.public_id[:10]} was never posted to the fake remote" in html
    assert "none: the payment was never sent" in html


def test_resolve_is_recorded_and_final(fake):
    lease, connection = fake
    _fail(connection, "permanent")
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    client = client_for(*EVERY_ACTION, username="ana")
    said = act(client, posting, "resolve_postings", note="entered by hand in batch 1", receipt="")
    assert "1 posting resolved by you" in " ".join(said)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED and posting.posted_at is not None
    person = posting.attempt_log.order_by("-number").first()
    assert (person.outcome, person.worker) == (AttemptOutcome.RESOLVED_BY_PERSON, "person:ana")
    assert person.error == "entered by hand in batch 1" and person.finished_at
    assert "Resolved by ana" in page(client, posting)
    # Nothing sends it again: retry and abandon are refused; a delivery does nothing.
    with pytest.raises(outbox.NotAllowed):
        outbox.retry(posting)
    with pytest.raises(outbox.NotAllowed):
        outbox.abandon(posting, who="bob", note="no")
    assert outbox.deliver(posting.pk, force=True) is None
    assert not FakeRemoteEntry.objects.filter(key=posting.key).exists()


def test_abandon_is_recorded_and_nothing_sends_it_again(fake):
    lease, connection = fake
    _fail(connection, "permanent")
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    client = client_for(*EVERY_ACTION, username="ana")
    act(client, posting, "abandon_postings", note="voided before it reached the ledger")
    posting.refresh_from_db()
    assert posting.state == PostingState.ABANDONED
    person = posting.attempt_log.order_by("-number").first()
    assert (person.outcome, person.worker) == (AttemptOutcome.ABANDONED_BY_PERSON, "person:ana")
    assert "Abandoned by ana" in page(client, posting)
    with pytest.raises(outbox.NotAllowed):
        outbox.retry(posting)
    with pytest.raises(outbox.NotAllowed):
        outbox.resolve(posting, who="bob", note="no")
    # A task django-q2 delivers again, even forced, cannot move it on or send it (and the
    # model refuses to move an abandoned posting on, should anything try).
    assert outbox.deliver(posting.pk, force=True) is None  # the claim says no, quietly
    posting.refresh_from_db()
    assert posting.state == PostingState.ABANDONED
    assert not FakeRemoteEntry.objects.filter(key=posting.key).exists()


def test_a_posting_still_being_delivered_cannot_be_closed_by_hand(fake):
    lease, connection = fake
    _fail(connection, "retryable")
    posting = _pay(lease)
    outbox.deliver(posting.pk)  # retrying
    client = client_for(*EVERY_ACTION)
    for action in ("resolve_postings", "abandon_postings"):
        said = act(client, posting, action, note="too early")
        assert "could post it twice" in " ".join(said), action
    posting.refresh_from_db()
    assert posting.state == PostingState.RETRYING
    outbox.deliver(posting.pk)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    said = act(client, posting, "abandon_postings", note="after it posted")
    assert "it is final" in " ".join(said)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED


def test_a_note_is_required(fake):
    lease, connection = fake
    _fail(connection, "permanent")
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    response = client_for(*EVERY_ACTION).post(
        CHANGELIST,
        {
            "action": "abandon_postings",
            "_selected_action": [posting.pk],
            "index": "0",
            "apply": "1",
            "note": "",
        },
    )
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION


@pytest.mark.parametrize(
    "action,perm",
    [
        ("resolve_postings", "integrations.resolve_posting"),
        ("abandon_postings", "integrations.abandon_posting"),
        ("retry_postings", "integrations.retry_posting"),
    ],
)
def test_each_action_needs_its_permission(fake, action, perm):
    lease, connection = fake
    _fail(connection, "permanent")
    posting = _pay(lease)
    outbox.deliver(posting.pk)
    others = tuple(p for p in EVERY_ACTION if p != perm)
    client = client_for(*others)
    assert f'id="console-{action}"' not in page(client, posting)
    act(client, posting, action, note="forged")
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION
    assert not posting.attempt_log.filter(worker__startswith="person:").exists()
    client = client_for(*others, perm)
    assert f'id="console-{action}"' in page(client, posting)
    act(client, posting, action, note="allowed")
    posting.refresh_from_db()
    assert posting.state != PostingState.NEEDS_ATTENTION
