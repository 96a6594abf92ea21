"""A day with the fake provider, shared by the reconciliation tests: a payment, and the refund
of another payment, both posted to the fake remote."""

from __future__ import annotations

from rentplatform import services


def posted_day(lease, capture_on_commit, amount: str = "100.00"):
    """(the payment, the refund of another), delivered through the outbox's tasks."""
    with capture_on_commit(execute=True):
        paid = services.accept_payment(lease, amount, "card")
    with capture_on_commit(execute=True):
        other = services.accept_payment(lease, "55.55", "ach")
    services.settle_payment(other)
    with capture_on_commit(execute=True):
        refund = services.refund_payment(other)
    return paid, refund
