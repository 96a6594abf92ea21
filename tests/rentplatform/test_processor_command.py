from __future__ import annotations

import json
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rentplatform.models import BatchStatus, Payment, PaymentState, Reversal
from rentplatform.services import accept_payment, block_lease, settle_payment
from tests.factories import lease_with_resident

from .conftest import chicago

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("processor", *args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> list[dict]:
    return [json.loads(line) for line in run(*args, "--json").splitlines() if line.strip()]


def test_pay_prints_and_json(leased):
    lease, resident = leased
    text = run("pay", "--lease", str(lease.pk), "--amount", "125.00", "--method", "card")
    payment = Payment.objects.get()
    # The text shows the short reference, as the portal and the admin do; --json the full one.
    assert payment.short_id in text and payment.public_id not in text and "125.00" in text
    [row] = run_json(
        "pay",
        "--lease",
        str(lease.pk),
        "--amount",
        "10",
        "--method",
        "ach",
        "--resident",
        str(resident.pk),
    )
    assert row["action"] == "pay"
    assert row["amount"] == "10.00"
    assert row["state"] == "processing"
    assert row["batch_id"] == Payment.objects.get(reference=row["payment"]).batch.batch_id


def test_pay_at_naive_time_is_property_local(leased):
    lease, _ = leased
    [row] = run_json(
        "pay",
        "--lease",
        str(lease.pk),
        "--amount",
        "5.00",
        "--method",
        "card",
        "--at",
        "2025-03-01T23:30",
    )
    assert row["business_day"] == "2025-03-01"


@pytest.mark.parametrize(
    "args",
    [
        ["--amount", "1.005", "--method", "card"],
        ["--amount", "-1", "--method", "card"],
        ["--amount", "abc", "--method", "card"],
    ],
)
def test_pay_bad_amount_is_refused(leased, args):
    with pytest.raises(CommandError, match="refused"):
        run("pay", "--lease", str(leased[0].pk), *args)
    assert not Payment.objects.exists()


def test_pay_blocked_lease_refused_and_nothing_written(leased):
    lease, _ = leased
    block_lease(lease, "Eviction")
    with pytest.raises(CommandError, match="blocked"):
        run("pay", "--lease", str(lease.pk), "--amount", "5.00", "--method", "card")
    assert not Payment.objects.exists()


def test_pay_unknown_lease_and_resident_not_on_lease(leased):
    lease, _ = leased
    _, stranger = lease_with_resident()
    with pytest.raises(CommandError, match="no lease"):
        run("pay", "--lease", "999999", "--amount", "5.00", "--method", "card")
    with pytest.raises(CommandError, match="not on lease"):
        run(
            "pay",
            "--lease",
            str(lease.pk),
            "--amount",
            "5.00",
            "--method",
            "card",
            "--resident",
            str(stranger.pk),
        )
    assert not Payment.objects.exists()


def test_settle_by_payment_batch_and_property(leased):
    lease, _ = leased
    day = chicago(2025, 3, 1, 10)
    p1 = accept_payment(lease, "1.00", "card", now=day)
    p2 = accept_payment(lease, "2.00", "card", now=day)
    p3 = accept_payment(lease, "3.00", "ach", now=day)
    p4 = accept_payment(lease, "4.00", "ach", now=chicago(2025, 3, 2, 10))
    [row] = run_json("settle", "--payment", p1.public_id)
    assert row["state"] == "settled"
    rows = run_json("settle", "--batch", p2.batch.batch_id)
    assert [r["payment"] for r in rows] == [p2.public_id]
    rows = run_json("settle", "--property", lease.property.code, "--day", "2025-03-01")
    assert [r["payment"] for r in rows] == [p3.public_id]
    p4.refresh_from_db()
    assert p4.state == PaymentState.PROCESSING
    assert "nothing to do" in run("settle", "--batch", p2.batch.batch_id)


def test_settle_twice_is_refused(leased):
    payment = settle_payment(accept_payment(leased[0], "1.00", "card"))
    with pytest.raises(CommandError, match="cannot become settled"):
        run("settle", "--payment", payment.public_id)


def test_deposit_by_batch_and_by_property_day(leased):
    lease, _ = leased
    day = chicago(2025, 3, 1, 10)
    card = settle_payment(accept_payment(lease, "10.00", "card", now=day))
    ach = settle_payment(accept_payment(lease, "20.00", "ach", now=day))
    [row] = run_json("deposit", "--batch", card.batch.batch_id)
    assert row["status"] == "deposited"
    assert row["net"] == "10.00"
    rows = run_json("deposit", "--property", lease.property.code, "--day", "2025-03-01")
    assert [r["batch_id"] for r in rows] == [ach.batch.batch_id]
    ach.refresh_from_db()
    assert ach.state == PaymentState.DEPOSITED


def test_deposit_refusal_changes_nothing(leased):
    lease, _ = leased
    day = chicago(2025, 3, 1, 10)
    card = settle_payment(accept_payment(lease, "10.00", "card", now=day))
    accept_payment(lease, "20.00", "ach", now=day)  # still processing: its batch is refused
    with pytest.raises(CommandError, match="settle them first"):
        run("deposit", "--property", lease.property.code, "--day", "2025-03-01")
    card.batch.refresh_from_db()
    assert card.batch.status == BatchStatus.OPEN  # rolled back with the refused one


def test_return_chargeback_refund_void(leased):
    lease, _ = leased
    ach = settle_payment(accept_payment(lease, "50.00", "ach"))
    [row] = run_json("return", "--payment", ach.public_id, "--code", "R01")
    assert (row["state"], row["return_code"], row["reversal_amount"]) == (
        "returned",
        "R01",
        "-50.00",
    )
    card = settle_payment(accept_payment(lease, "60.00", "card"))
    [row] = run_json("chargeback", "--payment", card.public_id)
    assert row["state"] == "charged_back"
    card2 = settle_payment(accept_payment(lease, "70.00", "card"))
    assert "refunded" in run("refund", "--payment", card2.public_id)
    fresh = accept_payment(lease, "80.00", "card")
    [row] = run_json("void", "--payment", fresh.public_id)
    assert row["state"] == "voided"
    assert Reversal.objects.count() == 4


def test_reversal_refusals_change_nothing(leased):
    lease, _ = leased
    card = accept_payment(lease, "50.00", "card", now=chicago(2025, 3, 1, 10))
    with pytest.raises(CommandError, match="only ACH"):
        run("return", "--payment", card.public_id, "--code", "R01")
    with pytest.raises(CommandError, match="only be voided that day"):
        run("void", "--payment", card.public_id, "--at", "2025-03-02T09:00")
    with pytest.raises(CommandError, match="not a payment reference"):
        run("void", "--payment", "xyz")
    card.refresh_from_db()
    assert card.state == PaymentState.PROCESSING
    assert not Reversal.objects.exists()
    # The same void on the day it was made goes through.
    [row] = run_json("void", "--payment", card.public_id, "--at", "2025-03-01T21:00")
    assert row["state"] == "voided"
    assert Decimal(row["reversal_amount"]) == Decimal("-50.00")


def test_bad_arguments_are_command_errors(leased):
    with pytest.raises(CommandError):
        run("settle", "--property", "x", "--day", "not-a-date")
    with pytest.raises(CommandError):
        run("pay", "--lease", str(leased[0].pk), "--amount", "1", "--method", "cash")


def test_payment_named_by_the_short_reference_shown(leased):
    """Each --payment subcommand takes the reference as printed (and all 32 digits, dashed)."""
    lease, _ = leased
    text = run("pay", "--lease", str(lease.pk), "--amount", "20.00", "--method", "card")
    payment = Payment.objects.get()
    shown = text.split("payment ", 1)[1].split()[0]
    assert shown == payment.short_id and len(shown) == 10
    assert "settle: payment " + shown in run("settle", "--payment", shown)
    assert "refunded" in run("refund", "--payment", shown.upper())
    ach = accept_payment(lease, "7.00", "ach", now=chicago(2025, 3, 1, 10))
    [row] = run_json("return", "--payment", str(ach.reference), "--code", "R01")
    assert row["payment"] == ach.public_id and row["state"] == "returned"


@pytest.mark.parametrize(
    "text, error",
    [("3f2a", "not a payment reference"), ("zz" * 5, "not a payment reference")],
)
def test_malformed_reference_is_one_sentence(leased, text, error):
    with pytest.raises(CommandError, match=error):
        run("settle", "--payment", text)


def test_unknown_and_ambiguous_short_reference(leased):
    lease, _ = leased
    first = accept_payment(lease, "5.00", "card", now=chicago(2025, 3, 1, 10))
    second = accept_payment(lease, "6.00", "card", now=chicago(2025, 3, 1, 10))
    # Two references that share their first 10 digits: refused, never a guess.
    Payment.objects.filter(pk=second.pk).update(
        reference=uuid.UUID(first.public_id[:10] + "0" * 22)
    )
    with pytest.raises(CommandError, match="more than one payment"):
        run("settle", "--payment", first.short_id)
    with pytest.raises(CommandError, match="no payment"):
        run("settle", "--payment", "0123456789")


def test_pay_resident_by_username_or_number(leased):
    lease, resident = leased
    [row] = run_json(
        "pay",
        "--lease",
        str(lease.pk),
        "--amount",
        "5.00",
        "--method",
        "card",
        "--resident",
        resident.user.username,
    )
    assert Payment.objects.get(reference=row["payment"]).resident == resident
    [row] = run_json(
        "pay",
        "--lease",
        str(lease.pk),
        "--amount",
        "6.00",
        "--method",
        "card",
        "--resident",
        str(resident.pk),
    )
    assert Payment.objects.get(reference=row["payment"]).resident == resident
    with pytest.raises(CommandError, match="no resident with username or number 'nobody'"):
        run(
            "pay",
            "--lease",
            str(lease.pk),
            "--amount",
            "5.00",
            "--method",
            "card",
            "--resident",
            "nobody",
        )
