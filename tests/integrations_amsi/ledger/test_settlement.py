"""Returns and settlement as production did them (issue item 5).

- A return names the original ClientTransactionID and the original batch's ClientJnlNo; eSite
  books it where it decides (the original batch while it is open; once that batch is settled,
  a batch of its own numbered by the ClientTransactionID, or the reopened original batch: the
  sandbox's ``return_batch`` variant), says where in eSiteBatchNo, and the client settles what
  eSite booked, where it booked it: every eSite batch ends settled at its total.
- A return batch is settled with ExternalJnlNo = the original ClientTransactionID and a
  positive SettlementAmount.
- SettlementDate is the bank deposit date: the host batch's deposit day, else its business day
  plus 3 business days (weekends skipped).

End-to-end tests run over loopback HTTP against the sandbox (tests/integrations_amsi/world.py);
the landing rules and dates are also checked on their own.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection as db_connection

from integrations.models import Connection, Posting, PostingState
from integrations.reconciliation import reconcile
from integrations_amsi.batches import (
    add_business_days,
    close_due_batches,
    deposit_date,
    links_to_settle,
    record_landing,
)
from integrations_amsi.conf import settings_for
from integrations_amsi.identifiers import client_transaction_id
from integrations_amsi.models import AmsiBatchEntry, AmsiBatchKind, AmsiBatchLink
from integrations_amsi.xmldocs import LedgerReply
from rentplatform import services
from rentplatform.models import BatchKind, DepositBatch, Property

ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"
THIRD = "001-01-103-3"
DAY = dt.date(2026, 11, 20)  # a Friday
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")
VARIANTS = ["separate", "original"]


def mdy(day: dt.date) -> str:
    return day.strftime("%m/%d/%Y")


def txn_of(payment) -> str:
    return client_transaction_id(Posting.objects.get(payment=payment, kind="payment"))


def link_of(posting: Posting) -> AmsiBatchLink:
    return AmsiBatchEntry.objects.select_related("link").get(posting=posting).link


def assert_books_balance(world) -> dict[str, dict]:
    """Every eSite batch is settled at its total (a negative one at its absolute value), and
    each of our links agrees with the eSite batch it names."""
    ledger = world.ledger()
    for jnl, batch in ledger.items():
        total = Decimal(batch["total"])
        assert batch["settled"] is True, f"eSite batch {jnl} is not settled: {batch}"
        assert Decimal(batch["settled_amount"]).copy_abs() == total.copy_abs(), batch
        link = AmsiBatchLink.objects.get(connection=world.connection, client_jnl_no=jnl)
        assert link.settled_amount == total, (jnl, link.settled_amount, total)
        assert link.esite_batch_no == str(batch["batch_no"])
        assert not link.needs_attention
    return ledger


# -- dates and settings (no sandbox) -----------------------------------------------------------


def test_business_days_skip_weekends_only():
    friday = dt.date(2026, 11, 20)
    assert add_business_days(friday, 3) == dt.date(2026, 11, 25)  # Friday -> Wednesday
    assert add_business_days(dt.date(2026, 11, 21), 3) == dt.date(2026, 11, 25)  # Saturday
    assert add_business_days(friday, 0) == friday
    # The production client's own expectations (holidays count as business days).
    assert add_business_days(dt.date(2014, 12, 22), 3) == dt.date(2014, 12, 25)
    assert add_business_days(dt.date(2014, 12, 24), 3) == dt.date(2014, 12, 29)
    assert add_business_days(dt.date(2014, 12, 25), 3) == dt.date(2014, 12, 30)
    assert add_business_days(dt.date(2015, 4, 15), 3) == dt.date(2015, 4, 20)


def test_deposit_date_is_the_property_day_of_the_deposit_else_the_lag():
    prop = Property(code="p", name="P", time_zone="America/Chicago")
    batch = DepositBatch(property=prop, business_day=DAY)
    assert deposit_date(batch) == dt.date(2026, 11, 25)
    assert deposit_date(batch, 1) == dt.date(2026, 11, 23)
    # 23:30 in Chicago is already the next day in UTC: the property's day counts.
    batch.deposited_at = dt.datetime(2026, 11, 24, 5, 30, tzinfo=dt.UTC)
    assert deposit_date(batch) == dt.date(2026, 11, 23)


def test_lag_and_approval_code_come_from_the_connection_settings():
    prop = Property(code="x", time_zone="America/Chicago")
    base = {"url": "http://h/e", "portfolio": "P", "user_id": "u", "property_id": "001"}
    conn = Connection(property=prop, provider="amsi", settings=base, credentials={"password": "p"})
    assert settings_for(conn).settlement_lag_days == 3
    assert settings_for(conn).approval_code == "RentPlatform"
    conn.settings = base | {"settlement_lag_days": "2", "approval_code": "Maple Payments Inc"}
    assert settings_for(conn).settlement_lag_days == 2
    assert settings_for(conn).approval_code == "Maple Paymen"  # at most 12 characters
    conn.settings = base | {"settlement_lag_days": 0}
    assert settings_for(conn).settlement_lag_days == 0  # "deposited the same day" is honoured
    conn.settings = base | {"settlement_lag_days": "soon", "approval_code": "  "}
    assert settings_for(conn).settlement_lag_days == 3
    assert settings_for(conn).approval_code == "RentPlatform"


# -- where a posting landed (no eDex call: replies made by hand) ----------------------------------


class _Provider:
    def __init__(self, connection):
        self.connection = connection


@pytest.fixture
def undelivered(world, settings):
    """Payments and reversals whose postings are written but not sent."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    return world


def _posted(posting: Posting) -> Posting:
    Posting.objects.filter(pk=posting.pk).update(state=PostingState.POSTED, posted_at=DAY_NOON)
    posting.refresh_from_db()
    return posting


DAY_NOON = dt.datetime.combine(DAY, dt.time(12), tzinfo=CHICAGO)


def test_record_landing_is_idempotent_and_follows_esite_batch_no(undelivered):
    world = undelivered
    provider = _Provider(world.connection)
    payment = world.pay(OTHER, "300.00", "ach", when=world.at(DAY, 9))
    pay_posting = world.posting(payment)
    ok = LedgerReply(error_code="0", error_description="", batch_no="7", bank_book="BB1")
    record_landing(provider, pay_posting, ok)
    record_landing(provider, pay_posting, ok)  # again: updated, never doubled
    original = AmsiBatchLink.objects.get(client_jnl_no=payment.batch.batch_id)
    assert (original.kind, original.esite_batch_no, original.bank_book) == ("payments", "7", "BB1")
    assert original.batch == payment.batch
    assert list(original.entries.values_list("amount", flat=True)) == [Decimal("300.00")]

    reversal = services.return_payment(payment, "R01", now=world.at(DAY, 15))
    rev_posting = world.posting(payment, "reversal")
    # The reply names the original eSite batch: it landed there, negative.
    record_landing(provider, rev_posting, ok)
    assert link_of(rev_posting) == original
    assert AmsiBatchEntry.objects.get(posting=rev_posting).amount == Decimal("-300.00")
    # Recorded again with another eSite batch (eSite booked it apart): the entry moves, once.
    apart = LedgerReply(error_code="0", error_description="", batch_no="9", bank_book="BB1")
    record_landing(provider, rev_posting, apart)
    record_landing(provider, rev_posting, apart)
    moved = link_of(rev_posting)
    assert moved.kind == AmsiBatchKind.RETURN
    assert moved.client_jnl_no == client_transaction_id(pay_posting)
    assert moved.esite_batch_no == "9"
    assert moved.batch == reversal.batch
    assert AmsiBatchEntry.objects.filter(posting=rev_posting).count() == 1
    assert not original.entries.filter(amount__lt=0).exists()
    # A reply without a batch number keeps a landing already recorded.
    record_landing(provider, rev_posting, LedgerReply(error_code="301", error_description=""))
    assert link_of(rev_posting) == moved


@pytest.mark.parametrize("settled", [False, True])
def test_a_return_reply_without_a_batch_number(undelivered, settled):
    """No eSiteBatchNo: the original batch while it is open, else a batch of its own."""
    world = undelivered
    provider = _Provider(world.connection)
    payment = world.pay(OTHER, "300.00", "ach", when=world.at(DAY, 9))
    record_landing(provider, _posted(world.posting(payment)), LedgerReply("0", "", batch_no="7"))
    original = AmsiBatchLink.objects.get(client_jnl_no=payment.batch.batch_id)
    if settled:
        AmsiBatchLink.objects.filter(pk=original.pk).update(settled_amount=Decimal("300.00"))
    services.return_payment(payment, "R01", now=world.at(DAY, 15))
    rev_posting = world.posting(payment, "reversal")
    record_landing(provider, rev_posting, LedgerReply("0", ""))
    link = link_of(rev_posting)
    if settled:
        assert (link.kind, link.client_jnl_no) == ("return", txn_of(payment))
    else:
        assert link == original


def test_settled_links_are_skipped_by_one_aggregate_query(undelivered, django_assert_num_queries):
    world = undelivered
    provider = _Provider(world.connection)
    for n, lease in enumerate((ALLOWED, OTHER, THIRD)):
        payment = world.pay(lease, f"{100 + n}.00", "card", when=world.at(DAY - dt.timedelta(n)))
        reply = LedgerReply("0", "", batch_no=str(n))
        record_landing(provider, _posted(world.posting(payment)), reply)
        AmsiBatchLink.objects.filter(client_jnl_no=payment.batch.batch_id).update(
            settled_amount=Decimal(f"{100 + n}.00")
        )
    with django_assert_num_queries(1):
        assert list(links_to_settle(world.connection)) == []
    # A total that moved (or was never settled) comes back.
    AmsiBatchLink.objects.filter(esite_batch_no="1").update(settled_amount=Decimal("5.00"))
    assert [link.esite_batch_no for link in links_to_settle(world.connection)] == ["1"]


# -- end to end against the sandbox ----------------------------------------------------------------


@pytest.mark.parametrize("return_batch", VARIANTS)
def test_a_return_after_settlement_and_deposit_leaves_every_esite_batch_settled(
    world, deliver, return_batch
):
    world.control.set_variants(return_batch=return_batch)
    with deliver():
        keep = world.pay(ALLOWED, "100.00", "ach", when=world.at(DAY, 9))
        payment = world.pay(THIRD, "720.00", "ach", when=world.at(DAY, 10))
    assert keep.batch_id == payment.batch_id
    lines = world.close_batches(now=world.at(DAY, 22))
    assert len(lines) == 1 and "settled at 820.00" in lines[0], lines
    deposited_on = DAY + dt.timedelta(days=3)  # Monday
    with deliver():
        world.settle_and_deposit(payment, when=world.at(deposited_on, 8))
        returned_on = DAY + dt.timedelta(days=5)  # Wednesday
        reversal = services.return_payment(payment, "R02", now=world.at(returned_on, 9))
    assert reversal.batch.kind == BatchKind.REVERSALS
    rev_posting = world.posting(payment, "reversal")
    assert rev_posting.state == PostingState.POSTED
    txn = txn_of(payment)

    lines = world.close_batches(now=world.at(returned_on, 9, 30))
    ledger = assert_books_balance(world)
    original = ledger[payment.batch.batch_id]
    link = link_of(rev_posting)
    if return_batch == "separate":
        # A batch of its own, numbered by the original ClientTransactionID, settled with a
        # positive amount; the original batch keeps its settlement.
        returned = ledger[txn]
        assert Decimal(returned["total"]) == Decimal("-720.00")
        assert Decimal(original["total"]) == Decimal("820.00")
        assert (link.kind, link.client_jnl_no, link.batch) == ("return", txn, reversal.batch)
        assert link.settled_amount == Decimal("-720.00")
        assert len(lines) == 1 and "settled at 720.00" in lines[0], lines
        # The return's host batch (a reversals batch) is not deposited: its day + 3.
        assert returned["settlement_date"] == mdy(add_business_days(returned_on, 3))
        assert link.settlement_date == add_business_days(returned_on, 3)
    else:
        # The original batch reopened, took the return and is settled again at its net.
        assert txn not in ledger
        assert Decimal(original["total"]) == Decimal("100.00")
        assert link.client_jnl_no == payment.batch.batch_id
        assert len(lines) == 1 and "settled at 100.00" in lines[0], lines
        # Re-settled with the original batch's deposit date.
        assert original["settlement_date"] == mdy(deposited_on)
    assert not AmsiBatchLink.objects.filter(client_jnl_no=reversal.batch.batch_id).exists()
    # Nothing moved since: the next run sends nothing.
    assert world.close_batches(now=world.at(returned_on, 23)) == []


@pytest.mark.parametrize("return_batch", VARIANTS)
def test_a_void_before_the_cutoff_lands_in_the_original_batch_settled_once_at_the_net(
    world, deliver, return_batch
):
    world.control.set_variants(return_batch=return_batch)
    with deliver():
        keep = world.pay(THIRD, "100.00", "ach", when=world.at(DAY, 9))
        payment = world.pay(OTHER, "250.00", "ach", when=world.at(DAY, 10))
        reversal = services.void_payment(payment, now=world.at(DAY, 20))
    assert reversal.batch_id == payment.batch_id == keep.batch_id
    link = link_of(world.posting(payment, "reversal"))
    assert (link.kind, link.client_jnl_no) == ("payments", payment.batch.batch_id)
    assert world.close_batches(now=world.at(DAY, 21, 59)) == []
    lines = world.close_batches(now=world.at(DAY, 22))
    assert lines == [
        f"{payment.batch.batch_id}: settled at 100.00 for {mdy(DAY + dt.timedelta(days=5))} "
        f"(eSite batch {link.esite_batch_no})"
    ]
    ledger = assert_books_balance(world)
    assert list(ledger) == [payment.batch.batch_id]
    batch = ledger[payment.batch.batch_id]
    assert Decimal(batch["total"]) == Decimal("100.00")
    assert batch["settlement_date"] == "11/25/2026"  # Friday + 3 business days
    assert batch["approval_code"] == "RentPlatform"
    assert world.close_batches(now=world.at(DAY + dt.timedelta(days=1), 9)) == []


def test_settlement_date_is_the_deposit_date_once_deposited(world, deliver):
    with deliver():
        payment = world.pay(ALLOWED, "80.00", "card", when=world.at(DAY, 9))
        # Deposited at 23:30 Chicago on Monday (Tuesday in UTC): Monday is the deposit date.
        world.settle_and_deposit(payment, when=world.at(DAY + dt.timedelta(days=3), 23, 30))
    world.close_batches(now=world.at(DAY + dt.timedelta(days=4), 9))
    ledger = assert_books_balance(world)
    assert ledger[payment.batch.batch_id]["settlement_date"] == "11/23/2026"
    link = AmsiBatchLink.objects.get(client_jnl_no=payment.batch.batch_id)
    assert link.settlement_date == dt.date(2026, 11, 23)


def test_the_lag_is_per_connection(world, deliver):
    world.connection.settings = {**world.connection.settings, "settlement_lag_days": 1}
    world.connection.save(update_fields=["settings"])
    with deliver():
        payment = world.pay(ALLOWED, "80.00", "card", when=world.at(DAY, 9))
    world.close_batches(now=world.at(DAY, 22))
    assert world.ledger()[payment.batch.batch_id]["settlement_date"] == "11/23/2026"


def test_a_return_batch_waits_for_nothing_but_its_own_postings(world, deliver):
    """A return batch is settled on the next run, whatever the time of day, and the payments
    batch whose payment it returns is not settled again."""
    world.control.set_variants(return_batch="separate")
    with deliver():
        a = world.pay(ALLOWED, "60.00", "card", when=world.at(DAY, 9))
        b = world.pay(OTHER, "40.00", "card", when=world.at(DAY, 9))
    world.close_batches(now=world.at(DAY, 22))
    with deliver():
        services.settle_payment(a)
        services.charge_back_payment(a, now=world.at(DAY + dt.timedelta(days=1), 8))
    lines = close_due_batches(
        world.connection.get_provider(), now=world.at(DAY + dt.timedelta(days=1), 8, 1)
    )
    assert lines and "settled at 60.00" in lines[0], lines
    assert Decimal(world.ledger()[txn_of(a)]["total"]) == Decimal("-60.00")
    assert b.batch_id == a.batch_id
    assert_books_balance(world)


@pytest.mark.parametrize("return_batch", VARIANTS)
def test_reconciliation_matches_a_return_batch(world, deliver, return_batch):
    world.control.set_variants(return_batch=return_batch)
    today = dt.date.today()
    with deliver():
        world.pay(ALLOWED, "100.00", "card")
        payment = world.pay(OTHER, "55.55", "ach")
    world.close_batches(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    with deliver():
        world.settle_and_deposit(payment)
        services.refund_payment(payment)
    world.close_batches(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert_books_balance(world)
    if return_batch == "separate":
        assert txn_of(payment) in world.ledger()
    result = reconcile(world.connection, today.replace(day=1))
    assert result.error == ""
    assert result.differences == [], result.differences
    assert result.summary().endswith("0 differences - our batches match eSite")


def test_a_missing_return_is_named_by_our_batch_id(world, deliver, settings):
    world.control.set_variants(return_batch="separate")
    today = dt.date.today()
    with deliver():
        payment = world.pay(OTHER, "55.55", "ach")
    world.close_batches(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    with deliver():
        world.settle_and_deposit(payment)
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    reversal = services.refund_payment(payment)  # never delivered
    result = reconcile(world.connection, today.replace(day=1))
    (missing,) = [d for d in result.differences if d.kind == "missing_item"]
    assert missing.batch_id == reversal.batch.batch_id
    assert reversal.public_id[:10] in missing.message


# -- the migration -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_keeps_existing_links_settled(tmp_path):
    """Links written before 0003 become payments batches with their posted postings as
    entries, so a batch settled before the upgrade is not settled again."""
    from django.db.migrations.executor import MigrationExecutor

    from tests.integrations_amsi.world import AmsiWorld

    world = AmsiWorld(tmp_path)
    try:
        world.import_property()
        payment = world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
        other = world.pay(OTHER, "40.00", "card", when=world.at(DAY, 10))
        services.settle_payment(other)
        services.charge_back_payment(other, now=world.at(DAY, 11))
        world.deliver_all()
        assert world.all_posted()
        batch_id = payment.batch.batch_id
        AmsiBatchEntry.objects.all().delete()
        AmsiBatchLink.objects.all().delete()

        executor = MigrationExecutor(db_connection)
        before = [("integrations_amsi", "0002_amsiconnection")]
        after = [("integrations_amsi", "0003_batch_links_per_esite_batch")]
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model(
            "integrations_amsi", "AmsiBatchLink"
        )
        old.objects.create(
            connection_id=world.connection.pk,
            batch_id=payment.batch.pk,
            client_jnl_no=batch_id,
            esite_batch_no="1",
            settled_amount=Decimal("100.00"),
        )
        executor = MigrationExecutor(db_connection)
        executor.loader.build_graph()
        executor.migrate(after)

        link = AmsiBatchLink.objects.get(client_jnl_no=batch_id)
        assert link.kind == AmsiBatchKind.PAYMENTS
        assert sorted(link.entries.values_list("amount", flat=True)) == [
            Decimal("-40.00"),
            Decimal("40.00"),
            Decimal("100.00"),
        ]
        assert list(links_to_settle(world.connection)) == []
    finally:
        world.close()
