"""The portal's payment form."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from rentplatform.models import PaymentMethod
from rentplatform.money import MAX_TEXT_LENGTH, MoneyError, parse_amount
from rentplatform.services.idempotency import validate_key


class PaymentForm(forms.Form):
    # Not ``required``, not stripped and no max_length here: parse_amount reads the text as typed
    # and refuses an empty, whitespace-only or over-long amount in the same sentence as the API
    # and the processor command. The browser still asks for a value and stops at 20 characters
    # (the widget's attributes).
    amount = forms.CharField(
        required=False,
        strip=False,
        widget=forms.TextInput(
            attrs={
                "inputmode": "decimal",
                "placeholder": "125.00",
                "required": True,
                "maxlength": MAX_TEXT_LENGTH,
            }
        ),
        help_text="Dollars and cents, e.g. 125.00",
    )
    # Validated against every method, offered only the ones the page thinks are allowed: the
    # service makes the real decision when the form is posted (the page may be stale).
    method = forms.ChoiceField(choices=PaymentMethod.choices, widget=forms.RadioSelect)
    # Generated when the form is rendered: sending the same form twice (a double click, a retry
    # after a lost reply) is one payment, and the second answer is the first one's.
    idempotency_key = forms.CharField(
        max_length=64, required=False, widget=forms.HiddenInput, validators=[validate_key]
    )

    def __init__(self, *args: Any, allowed_methods: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["method"].widget.choices = allowed_methods

    def clean_amount(self) -> Decimal:
        try:
            return parse_amount(self.cleaned_data["amount"])
        except MoneyError as err:
            raise forms.ValidationError(str(err)) from None


class VoidForm(forms.Form):
    """The void button's form: its hidden key makes a repeated void one void, one answer."""

    idempotency_key = forms.CharField(
        max_length=64, required=False, widget=forms.HiddenInput, validators=[validate_key]
    )
