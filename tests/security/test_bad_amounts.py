"""Bad amounts at the three doors that take one: the portal's pay form, the API and the processor
command. Each is refused with one sentence naming the rule, the same sentence at every door (one
parser: ``rentplatform.money.parse_amount``), never a 500 or a traceback, and nothing is written.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from rentplatform.models import Payment
from rentplatform.money import MAX_PAYMENT
from tests.factories import lease_with_resident

pytestmark = pytest.mark.django_db

# (id, amount as typed, a word of the rule the message must name)
BAD_AMOUNTS = [
    ("exponent-huge", "1e30", "exponent"),
    ("exponent-upper", "1E+28", "exponent"),
    ("exponent-small", "1e3", "exponent"),
    ("exponent-negative", "5E-2", "exponent"),
    ("nan", "NaN", "finite"),
    ("nan-lower", "nan", "finite"),
    ("signalling-nan", "sNaN", "finite"),
    ("infinity", "Infinity", "finite"),
    ("inf", "inf", "finite"),
    ("minus-infinity", "-Infinity", "finite"),
    ("three-places", "10.005", "two decimal places"),
    ("three-places-zero", "10.500", "two decimal places"),
    ("many-places", "0.0000000001", "two decimal places"),
    ("thousands-separator", "1,000.00", "commas"),
    ("decimal-comma", "12,50", "commas"),
    ("space-separator", "1 000.00", "spaces"),
    ("dollar-sign", "$125.00", "dollar sign"),
    ("empty", "", "required"),
    ("whitespace", "   ", "required"),
    ("tab-newline", "\t\n", "required"),
    ("negative", "-5.00", "greater than zero"),
    ("negative-zero", "-0.00", "greater than zero"),
    ("zero", "0", "greater than zero"),
    ("zero-cents", "0.00", "greater than zero"),
    ("over-maximum", "100000.00", "limit"),
    ("just-over-maximum", str(MAX_PAYMENT + 1), "limit"),
    ("many-digits", "9" * 19, "limit"),
    ("too-long", "1" + "0" * 25, "at most 20 characters"),
    ("words", "ten dollars", "not a number"),
    ("hex", "0x10", "not a number"),
    ("two-points", "1.2.3", "not a number"),
    ("plus-minus", "+-5", "not a number"),
    ("arabic-digits", "١٢٣", "digits 0-9"),
    ("fullwidth-digits", "１２３", "digits 0-9"),
]


@pytest.fixture
def door():
    """(lease, portal client, API client) for a resident allowed to pay by card."""
    lease, resident = lease_with_resident()
    portal = Client()
    portal.force_login(resident.user)
    api = APIClient()
    api.force_authenticate(user=resident.user)
    return lease, portal, api


def portal_message(lease, client: Client, amount: str) -> str:
    response = client.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": amount, "method": "card"}
    )
    assert response.status_code == 200, response.status_code
    errors = response.context["form"].errors
    assert list(errors) == ["amount"], errors
    assert len(errors["amount"]) == 1, errors
    html = response.content.decode()
    assert "Traceback" not in html
    return errors["amount"][0]


def api_message(lease, client: APIClient, amount: str) -> str:
    response = client.post(
        reverse("api:lease-payments", args=[lease.pk]),
        {"amount": amount, "method": "card"},
        format="json",
    )
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == ["amount"], body
    assert len(body["fields"]["amount"]) == 1, body
    assert body["detail"] == f"amount: {body['fields']['amount'][0]}"
    return body["fields"]["amount"][0]


def processor_message(lease, amount: str) -> str:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:  # CommandError: a message, exit 1, no traceback
        call_command(
            "processor",
            "pay",
            "--lease",
            str(lease.pk),
            f"--amount={amount}",
            "--method",
            "card",
            stdout=out,
            stderr=err,
        )
    text = str(info.value)
    prefix = "pay refused (amount): "
    assert text.startswith(prefix), text
    return text.removeprefix(prefix)


@pytest.mark.parametrize(("amount", "rule"), [pytest.param(a, r, id=i) for i, a, r in BAD_AMOUNTS])
def test_bad_amount_is_one_clear_sentence_at_every_door(door, amount, rule):
    lease, portal, api = door
    messages = {
        "portal": portal_message(lease, portal, amount),
        "api": api_message(lease, api, amount),
        "processor": processor_message(lease, amount),
    }
    assert not Payment.objects.exists()
    # The same rule, in the same words, at all three doors.
    assert len(set(messages.values())) == 1, messages
    message = messages["portal"]
    assert rule in message, message
    # One sentence, naming the amount.
    assert message.startswith("The amount"), message
    assert message.endswith("."), message
    assert message.replace("e.g. ", "").count(". ") == 0, message


@pytest.mark.parametrize("amount", ["125.00", "125", "125.5", " 125.00 ", "0.01", "99999.99"])
def test_good_amounts_are_taken_at_every_door(door, amount):
    from decimal import Decimal

    lease, portal, api = door
    response = portal.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": amount, "method": "card"}
    )
    assert response.status_code == 302, response.context and response.context["form"].errors
    response = api.post(
        reverse("api:lease-payments", args=[lease.pk]),
        {"amount": amount, "method": "card"},
        format="json",
    )
    assert response.status_code == 201, response.content
    call_command(
        "processor",
        "pay",
        "--lease",
        str(lease.pk),
        f"--amount={amount}",
        "--method",
        "card",
        stdout=StringIO(),
    )
    expected = Decimal(amount.strip()).quantize(Decimal("0.01"))
    assert list(Payment.objects.values_list("amount", flat=True)) == [expected] * 3


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        pytest.param({"amount": 10.5}, "float", id="json-float"),
        pytest.param({"amount": 1e30}, "float", id="json-float-huge"),
        pytest.param({"amount": 10**30}, "limit", id="json-huge-integer"),
        pytest.param({"amount": -5}, "greater than zero", id="json-negative-integer"),
        pytest.param({"amount": 0}, "greater than zero", id="json-zero"),
        pytest.param({"amount": True}, "decimal string", id="json-true"),
        pytest.param({"amount": {"value": "1.00"}}, "decimal string", id="json-object"),
    ],
)
def test_api_json_numbers_follow_the_same_rules(door, body, rule):
    lease, _, api = door
    response = api.post(
        reverse("api:lease-payments", args=[lease.pk]), {**body, "method": "card"}, format="json"
    )
    assert response.status_code == 400, response.content
    message = response.json()["fields"]["amount"][0]
    assert rule in message and message.startswith("The amount"), message
    assert not Payment.objects.exists()
