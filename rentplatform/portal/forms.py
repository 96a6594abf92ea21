"""The portal's payment form."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from rentplatform.models import PaymentMethod
from rentplatform.money import MoneyError, positive_money


class PaymentForm(forms.Form):
    amount = forms.CharField(
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "125.00"}),
        help_text="Dollars and cents, e.g. 125.00",
    )
    # Validated against every method, offered only the ones the page thinks are allowed: the
    # service makes the real decision when the form is posted (the page may be stale).
    method = forms.ChoiceField(choices=PaymentMethod.choices, widget=forms.RadioSelect)
    # Makes a double submit of the same form one payment, not two.
    idempotency_key = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, allowed_methods: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["method"].widget.choices = allowed_methods

    def clean_amount(self) -> Decimal:
        text = self.cleaned_data["amount"].strip()
        if not text.isascii():
            raise forms.ValidationError("Use the digits 0-9 for the amount.")
        try:
            return positive_money(text)
        except MoneyError as err:
            raise forms.ValidationError(str(err).removeprefix("amount: ")) from None
