"""Money is Decimal with two places, everywhere.

One place defines the field shape and the one parser every door uses for an amount: the portal's
pay form, the API and the ``processor`` command all call ``parse_amount`` (through the service,
which calls it again), so an amount is refused by the same rule, in the same sentence, wherever it
is typed. The rules, in the order they are checked:

- a value is required: empty or whitespace-only text is refused;
- text is at most 20 characters (after surrounding whitespace is stripped);
- the digits are 0-9 (``Decimal()`` would read other scripts' digits: "١٢٣" is 123);
- the number is finite (NaN, sNaN, Infinity refused);
- no thousands separators (commas): "1,000.00" is refused rather than guessed, because "12,50"
  is 12.50 to half the world and 1250.00 to the other half;
- no dollar sign, no spaces inside, no exponent ("1e3"): what a person types as dollars and cents
  is digits, an optional point and at most two more digits;
- at most two decimal places, as written ("10.500" too: cents are the smallest unit);
- greater than zero (for a payment) and at most MAX_PAYMENT.

Floats are refused (a float has already lost the cents a resident typed); a JSON integer is taken
as whole dollars. Every check works on the text or on an exact Decimal, never on a float, and no
Decimal arithmetic runs before the range check (``Decimal("1e30").quantize()`` would raise).
Databases enforce positive amounts again through check constraints.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.db import models

MAX_DIGITS = 12
DECIMAL_PLACES = 2
CENT = Decimal("0.01")
# Larger than any rent payment a property would take online; stops typos like 1000000.
MAX_PAYMENT = Decimal("99999.99")
MAX_TEXT_LENGTH = 20

# Dollars and cents as a person types them: "125", "125.5", "125.50", ".50", "125."; a leading
# minus is read so that "-5.00" is told it must be greater than zero.
_PLAIN = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NON_FINITE = re.compile(r"[+-]?(?:s?nan[0-9]*|inf|infinity)", re.IGNORECASE)
_EXPONENT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)e[+-]?[0-9]+", re.IGNORECASE)


class MoneyError(ValueError):
    """A value that is not an acceptable amount of money; the message is one sentence."""


def _text(value: object, field: str) -> str | Decimal:
    """The amount's text (stripped), or an exact Decimal for Decimal and int input."""
    if isinstance(value, bool):
        raise MoneyError(f'The {field} must be a decimal string such as "125.00".')
    if isinstance(value, float):
        raise MoneyError(
            f'The {field} must be a decimal string such as "125.00", not a float '
            "(floats lose cents)."
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise MoneyError(f'The {field} must be a decimal string such as "125.00".')
    return value.strip()


def _check_text(text: str, field: str) -> Decimal:
    if not text:
        raise MoneyError(f"The {field} is required: dollars and cents, e.g. 125.00.")
    if len(text) > MAX_TEXT_LENGTH:
        raise MoneyError(f"The {field} must be at most {MAX_TEXT_LENGTH} characters, e.g. 125.00.")
    if not text.isascii():
        raise MoneyError(f"The {field} must be written with the digits 0-9, e.g. 125.00.")
    if _NON_FINITE.fullmatch(text):
        raise MoneyError(
            f"The {field} is not a finite number (NaN and Infinity are refused); "
            "enter dollars and cents, e.g. 125.00."
        )
    if "," in text and _PLAIN.fullmatch(text.replace(",", "")):
        raise MoneyError(
            f"The {field} must not contain commas (thousands separators): write 1000.00, "
            "not 1,000.00."
        )
    if text.startswith("$") and _PLAIN.fullmatch(text[1:].strip()):
        raise MoneyError(f"The {field} must not include a dollar sign: write 125.00, not $125.00.")
    if _EXPONENT.fullmatch(text):
        raise MoneyError(
            f"The {field} must not use exponent notation such as 1e3: write all the digits, "
            "e.g. 1000.00."
        )
    if len(text.split()) > 1 and _PLAIN.fullmatch("".join(text.split())):
        raise MoneyError(f"The {field} must not contain spaces: write 1000.00, not 1 000.00.")
    if not _PLAIN.fullmatch(text):
        raise MoneyError(f"The {field} is not a number: write dollars and cents, e.g. 125.00.")
    _, _, cents = text.partition(".")
    if len(cents) > DECIMAL_PLACES:
        raise _too_many_places(field)
    return Decimal(text)  # exact: the text is digits and a point


def _too_many_places(field: str) -> MoneyError:
    return MoneyError(
        f"The {field} has more than two decimal places: the smallest amount is one cent (0.01)."
    )


def to_money(value: object, *, field: str = "amount") -> Decimal:
    """Return ``value`` as a two-place Decimal (any sign), or raise MoneyError naming the rule."""
    got = _text(value, field)
    if isinstance(got, Decimal):
        if not got.is_finite():
            raise MoneyError(
                f"The {field} is not a finite number (NaN and Infinity are refused); "
                "enter dollars and cents, e.g. 125.00."
            )
        if got.as_tuple().exponent < -DECIMAL_PLACES:  # type: ignore[operator]
            raise _too_many_places(field)
        amount = got
    else:
        amount = _check_text(got, field)
    if abs(amount) > MAX_PAYMENT * 10**6:
        # Far beyond any amount this platform holds; refused before quantize() could overflow.
        raise MoneyError(f"The {field} is over the {MAX_PAYMENT} limit for one payment.")
    amount = amount.quantize(CENT)
    if amount == 0:
        amount = abs(amount)  # no negative zero
    return amount


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """The one parser for a payment amount: every door (portal, API, processor) calls this."""
    amount = to_money(value, field=field)
    if amount <= 0:
        raise MoneyError(f"The {field} must be greater than zero.")
    if amount > MAX_PAYMENT:
        raise MoneyError(f"The {field} is over the {MAX_PAYMENT} limit for one payment.")
    return amount


# The name the services used before parse_amount existed.
positive_money = parse_amount


class MoneyField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MAX_DIGITS)
        kwargs.setdefault("decimal_places", DECIMAL_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DecimalField", args, kwargs
