"""The resident portal: server-rendered pages over the service layer.

Every page starts from ``queries.own_leases`` / ``own_payments``, so another resident's lease or
payment is a 404. The pay and void views always call the service, which checks access at the
moment of payment; the page's view of the lease may be minutes old.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from rentplatform.models import Lease, Payment, PaymentState
from rentplatform.services import (
    IdempotencyConflict,
    ServiceError,
    accept_payment,
    void_payment,
)

from .forms import PaymentForm, VoidForm
from .queries import (
    get_payment_or_404,
    lease_facts,
    own_leases,
    own_payments,
    resident_of,
    voidable_today,
)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    resident = resident_of(request.user)
    if resident is None:
        # Staff and other accounts without a Resident: explain instead of failing.
        return render(request, "portal/no_resident.html")
    leases = [(lease, lease_facts(lease)) for lease in own_leases(request.user)]
    return render(request, "portal/home.html", {"resident": resident, "leases": leases})


def _own_lease_or_404(request: HttpRequest, pk: int) -> Lease:
    if resident_of(request.user) is None:
        raise Http404("no resident profile")
    return get_object_or_404(own_leases(request.user), pk=pk)


@login_required
def lease_detail(request: HttpRequest, pk: int) -> HttpResponse:
    lease = _own_lease_or_404(request, pk)
    resident = resident_of(request.user)
    # Each void button carries its own idempotency key (VoidForm).
    payments = []
    for payment in own_payments(request.user).filter(lease=lease):
        voidable = voidable_today(payment, resident)
        payments.append((payment, voidable, _fresh_key() if voidable else ""))
    # The balance is the accounting system's, as last reported: a payment still processing
    # is not in it yet, and the page says so rather than look as if the payment did nothing.
    processing = any(p.state == PaymentState.PROCESSING for p, _, _ in payments)
    return render(
        request,
        "portal/lease_detail.html",
        {
            "lease": lease,
            "facts": lease_facts(lease),
            "payments": payments,
            "processing": processing,
        },
    )


def _fresh_key() -> str:
    return uuid.uuid4().hex


@login_required
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    lease = _own_lease_or_404(request, pk)
    facts = lease_facts(lease)
    status = 200
    refusal = ""
    if request.method == "POST":
        form = PaymentForm(request.POST, allowed_methods=facts.allowed_methods)
        if form.is_valid():
            try:
                payment = accept_payment(
                    lease,
                    form.cleaned_data["amount"],
                    form.cleaned_data["method"],
                    resident=resident_of(request.user),
                    idempotency_key=form.cleaned_data["idempotency_key"] or None,
                )
            except IdempotencyConflict as err:
                # The form was sent before (the resident went back and changed it). Name the
                # payment it made; a fresh key makes sending this form again a new payment.
                first = err.existing
                data = request.POST.copy()
                data["idempotency_key"] = _fresh_key()
                form = PaymentForm(data, allowed_methods=facts.allowed_methods)
                form.is_valid()
                form.add_error(
                    None,
                    f"This form was already used for a payment of ${first.amount} by "
                    f"{first.get_method_display()} (reference {first.short_id}). To make "
                    "another payment, check the amount and send this form again.",
                )
                status = 422
            except ServiceError as err:
                # Said once, in place of the page's notice about the lease (which would repeat
                # it); the form stays only while some method is still allowed.
                refusal = err.message
            else:
                # A retry of the same form (same key) is the first payment, with the same words.
                messages.success(
                    request,
                    f"Payment of ${payment.amount} by {payment.get_method_display()} accepted "
                    f"(reference {payment.short_id}).",
                )
                return redirect("portal:lease", pk=lease.pk)
    else:
        methods = facts.allowed_methods
        form = PaymentForm(
            initial={
                "idempotency_key": _fresh_key(),
                "method": methods[0][0] if methods else None,
            },
            allowed_methods=methods,
        )
    context = {"lease": lease, "facts": facts, "form": form, "refusal": refusal}
    return render(request, "portal/pay.html", context, status=status)


@login_required
@require_POST
def void(request: HttpRequest, public_id: str) -> HttpResponse:
    resident = resident_of(request.user)
    if resident is None:
        raise Http404("no resident profile")
    payment: Payment = get_payment_or_404(own_payments(request.user), public_id)
    if payment.resident_id != resident.pk:
        messages.error(request, "Only the resident who made this payment can void it.")
        return redirect("portal:lease", pk=payment.lease_id)
    form = VoidForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["idempotency_key"]))
        return redirect("portal:lease", pk=payment.lease_id)
    try:
        void_payment(
            payment,
            note="voided by the resident in the portal",
            idempotency_key=form.cleaned_data["idempotency_key"] or None,
            requested_by=request.user,
        )
    except ServiceError as err:
        messages.error(request, err.message)
    else:
        # The button sent twice (same key) is one void, and the same answer.
        messages.success(request, f"Payment of ${payment.amount} voided.")
    return redirect("portal:lease", pk=payment.lease_id)
