"""Money is Decimal with two places, everywhere.

One place defines the field shape and the conversion; floats are refused with a named error
(a float has already lost the cents a resident typed), as are NaN, infinities and more than two
decimal places. Databases enforce positive amounts again through check constraints.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db import models

MAX_DIGITS = 12
DECIMAL_PLACES = 2
CENT = Decimal("0.01")
# Larger than any rent payment a property would take online; stops typos like 1000000.
MAX_PAYMENT = Decimal("99999.99")


class MoneyError(ValueError):
    """A value that is not an acceptable amount of money."""


def to_money(value: object, *, field: str = "amount") -> Decimal:
    """Return ``value`` as a two-place Decimal, or raise MoneyError naming the field."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"{field}: {value!r} is a {type(value).__name__}; give a decimal string")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if text.startswith("$"):
            text = text[1:]
        if not text.isascii():
            # Decimal() reads other scripts' digits ("١٢٣" is 123): refuse what a person
            # could not have meant as an amount on a US rent ledger.
            raise MoneyError(f"{field}: {value!r} is not a plain decimal number")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"{field}: {value!r} is not a number") from None
    else:
        raise MoneyError(f"{field}: {value!r} is not a number")
    if not amount.is_finite():
        raise MoneyError(f"{field}: {value!r} is not a finite number")
    if amount != amount.quantize(CENT):
        raise MoneyError(f"{field}: {value!r} has more than two decimal places")
    amount = amount.quantize(CENT)
    if amount == 0:
        amount = abs(amount)  # no negative zero
    return amount


def positive_money(value: object, *, field: str = "amount") -> Decimal:
    amount = to_money(value, field=field)
    if amount <= 0:
        raise MoneyError(f"{field}: {value!r} must be greater than zero")
    if amount > MAX_PAYMENT:
        raise MoneyError(f"{field}: {value!r} is over the {MAX_PAYMENT} limit for one payment")
    return amount


class MoneyField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MAX_DIGITS)
        kwargs.setdefault("decimal_places", DECIMAL_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DecimalField", args, kwargs
