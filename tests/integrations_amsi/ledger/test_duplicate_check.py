"""amsi_duplicate_check: the one deliberate repeat that tells whether an eSite refuses it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Connection


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("amsi_duplicate_check", "maple", *args, stdout=out)
    return out.getvalue()


def test_without_send_nothing_is_sent(world, deliver):
    with deliver():
        payment = world.pay("001-01-101-1", "1.00", "card")
    posting = world.posting(payment)
    text = _run("--posting", posting.key[:10])
    assert "Nothing sent" in text and "500000" in text
    assert len(world.entries(payment.batch.batch_id)) == 1


@pytest.mark.parametrize("duplicates", ["refuse", "accept"])
def test_the_repeat_is_sent_once_and_only_a_refusal_is_recorded(world, deliver, duplicates):
    world.control.set_variants(duplicates=duplicates)
    with deliver():
        payment = world.pay("001-01-101-1", "1.00", "card")
    posting = world.posting(payment)
    args = ("--posting", posting.key, "--send", "--record", "--by", "Jo Operator")
    if duplicates == "refuse":
        text = _run(*args)
        assert "REFUSED the repeat: ErrorCode 206" in text
        settings = Connection.objects.get().settings
        assert settings["duplicates_refused_by"] == "Jo Operator"
        assert settings["duplicates_refused_code"] == "206"
        assert Connection.objects.get().get_provider().checks_unknown_outcomes()
        assert len(world.entries(payment.batch.batch_id)) == 1
    else:
        with pytest.raises(CommandError, match="ACCEPTED the repeat"):
            _run(*args)
        assert "duplicates_refused_at" not in Connection.objects.get().settings
        assert len(world.entries(payment.batch.batch_id)) == 2  # what the manager must remove


def test_only_a_posted_payment_is_repeated(world, deliver):
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay("001-01-101-1", "1.00", "card")
    with pytest.raises(CommandError, match="Unconfirmed"):
        _run("--posting", world.posting(payment).key, "--send")
