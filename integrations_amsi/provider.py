"""The AMSI eSite provider: the framework's hooks, filled with eDex calls."""

from __future__ import annotations

import datetime as dt
import logging

from integrations.exceptions import (
    ConnectionTestFailed,
    IntegrationError,
    PermanentError,
    RetryableError,
)
from integrations.logging import mask
from integrations.models import Posting, PostingKind
from integrations.providers.base import AccountingProvider, ConnectionCheck, Delivered
from rentplatform.prepared import Prepared

from . import PROVIDER_ID, advice, batches, errors, reconcile
from .client import get_client
from .conf import settings_for
from .forms import CONNECTION_FIELDSETS, AmsiConnectionForm
from .identifiers import client_jnl_no, client_transaction_id
from .importer import AmsiImport
from .linking import AmsiLinking
from .models import AmsiLeaseLink, AmsiOccupantLink
from .xmldocs import LedgerReply, PaymentDoc, ReturnDoc

log = logging.getLogger(__name__)

PAYMENT_TYPE = {"card": "P", "ach": "C"}  # P "Plastic", C check/bank (production: the same)
# The only length limit seen in production: ReturnPayment's Description cut to 30 characters.
DESCRIPTION_MAX = 30


def reversal_reason(reversal) -> tuple[str, str]:
    """(Reason, Description) for ReturnPayment, by the business rules (rule 5).

    Reasons as the production client sent them: ChargeBack (a card payment reversed), Reverse
    (refund, void, cancel), NSF (a returned bank payment, whatever its R-code). The
    Description, cut to 30 characters, carries what the reason cannot: REFUNDED / VOIDED, the
    NACHA R-code, and a short reference a person can search for.
    """
    ref = reversal.short_id  # as the admin shows it (and its search takes it)
    if reversal.kind == "chargeback":
        reason, text = "ChargeBack", f"CHARGE BACK {ref}"
    elif reversal.kind == "refund":
        reason, text = "Reverse", f"REFUNDED {ref}"
    elif reversal.kind == "void":
        reason, text = "Reverse", f"VOIDED {ref}"
    elif reversal.kind == "return":
        reason, text = "NSF", f"NSF {reversal.return_code} {ref}"
    else:
        raise ValueError(f"unknown reversal kind {reversal.kind!r}")
    return reason, text[:DESCRIPTION_MAX]


# The four ids only, not the lease's whole AMSI record (``raw``), and in the same read the link
# of the eSite batch the payment lands in (``batches.landing_columns``); read for every
# payment, so compiled once (rentplatform/prepared.py).
_LEASE_LINK = Prepared(
    lambda lease_id, connection_id, jnl_no: (
        AmsiLeaseLink.objects.filter(lease_id=lease_id)
        .only("lease_id", *AmsiLeaseLink.key_fields)
        .annotate(**batches.landing_columns(connection_id, jnl_no))
        .order_by("pk")[:1]
    ),
    int,
    int,
    str,
)


class AmsiProvider(AmsiImport, AmsiLinking, AccountingProvider):
    id = PROVIDER_ID
    name = "AMSI eSite (eDex)"
    system_name = "eSite"
    report_help = (
        "Reports > Accounting Reports > External Deposits, By Payment, as a CSV file with the "
        "columns External Batch and Totals (the sandbox serves it itself; whether eSite "
        "exports the report as CSV, and under which column names, is not known)."
    )
    link_model = AmsiLeaseLink
    occupant_model = AmsiOccupantLink
    admin_form = AmsiConnectionForm
    admin_fieldsets = CONNECTION_FIELDSETS

    def __init__(self, connection):
        super().__init__(connection)
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            self._settings = settings_for(self.connection)
        return self._settings

    @property
    def client(self):
        return get_client(self.settings, key=self.connection.pk)

    def describe(self) -> str:
        property_id = self.connection.setting("property_id", "")
        portfolio = self.connection.setting("portfolio", "")
        return f"PropertyId {property_id} in {portfolio}" if property_id else ""

    # -- connection --------------------------------------------------------------------------
    def test_connection(self) -> ConnectionCheck:
        """The login, portfolio and property (``EdexClient.test``), then the ClientMerchantID
        where eSite lists one (``onboarding.check_merchant``: otherwise OK, saying it was not
        checked), as ``amsi_connect`` and the connection form check it."""
        from .onboarding import check_merchant

        try:
            merchant = check_merchant(self.client, self.settings, self.client.test())
            return ConnectionCheck(merchant.ok, merchant.summary)
        except ConnectionTestFailed as err:
            return ConnectionCheck(
                False, err.message, details={"login_refused": err.code == errors.TEST_LOGIN_REFUSED}
            )
        except IntegrationError as err:
            return ConnectionCheck(False, mask(str(err)))

    # -- postings ----------------------------------------------------------------------------
    def _link(self, payment) -> AmsiLeaseLink:
        link = _LEASE_LINK.first(payment.lease_id, self.connection.pk, payment.batch.batch_id)
        if link is None:
            raise PermanentError(
                f"lease #{payment.lease_id} is not linked to an AMSI lease (no ResiID); "
                "link it, then retry",
                provider=self.id,
                operation="AddPayment",
                record=payment.public_id,
                code="NOT_LINKED",
            )
        return link

    def _payment_doc(self, posting) -> PaymentDoc:
        return self._payment_doc_and_link(posting)[0]

    def _payment_doc_and_link(self, posting) -> tuple[PaymentDoc, AmsiLeaseLink]:
        payment = posting.payment
        link = self._link(payment)
        doc = PaymentDoc(
            property_id=link.property_id,
            bldg_id=link.bldg_id,
            unit_id=link.unit_id,
            resi_id=link.resi_id,
            merchant_id=self.settings.merchant_id,
            transaction_id=client_transaction_id(posting),
            transaction_date=payment.business_day,
            amount=payment.amount,
            jnl_no=client_jnl_no(payment.batch.batch_id, record=posting.key),
            description=f"Online {payment.method} {payment.short_id}"[:DESCRIPTION_MAX],
            payment_type=PAYMENT_TYPE[payment.method],
        )
        return doc, link

    def payment_document(self, posting) -> str:
        """The AddPayment XMLData this provider sends for a payment posting."""
        return self._payment_doc(posting).xml()

    def transaction_id(self, posting) -> str:
        """The ClientTransactionID a posting is known by in eSite (a reversal: its payment's)."""
        if posting.kind == PostingKind.REVERSAL:
            return client_transaction_id(self._payment_posting(posting))
        return client_transaction_id(posting)

    def _payment_posting(self, posting):
        """The payment posting a reversal refers to (it carries the ClientTransactionID)."""
        original = Posting.objects.filter(
            payment_id=posting.payment_id, kind=PostingKind.PAYMENT
        ).first()
        if original is None:
            raise PermanentError(
                f"payment {posting.payment.short_id} was never posted to AMSI, so its "
                "reversal has no ClientTransactionID to name; post the payment first",
                provider=self.id,
                operation="ReturnPayment",
                record=posting.key,
                code="PAYMENT_NOT_POSTED",
            )
        return original

    def _return_doc(self, posting) -> ReturnDoc:
        """ReturnPayment as production sent it: the original ClientTransactionID and the
        original payment's batch (ClientJnlNo), whatever batch the reversal reports under."""
        reason, description = reversal_reason(posting.reversal)
        return ReturnDoc(
            transaction_id=client_transaction_id(self._payment_posting(posting)),
            reason=reason,
            jnl_no=client_jnl_no(posting.payment.batch.batch_id, record=posting.key),
            description=description,
        )

    def _write(self, posting, operation: str, xml: str, already_codes: set[str]):
        reply, text = self.client.ledger(operation, xml, record=posting.key)
        if reply.ok or reply.error_code in already_codes:
            # Where it landed is recorded by record_delivery, with the posting's outcome.
            return Delivered(
                remote_reference=reply.evolution_reference
                or reply.fields.get("EvolutionTransactionID", ""),
                request_document=mask(xml),
                response_document=text,
                data={"eSiteBatchNo": reply.batch_no, "eSiteBankBookID": reply.bank_book},
                already_there=not reply.ok,
            )
        raise errors.error_for(
            reply.error_code,
            reply.error_description,
            operation=operation,
            record=posting.key,
            response=text,
            request=mask(xml),
        )

    def post_payment(self, posting) -> Delivered:
        doc, link = self._payment_doc_and_link(posting)
        delivered = self._write(posting, "AddPayment", doc.xml(), self._already_codes(posting))
        # Where it landed, when the batch's link read with the lease link says it all: the
        # outbox writes it with the posted outcome (else record_delivery, as for a return).
        delivered.landing = batches.known_landing(posting, link, delivered.data)
        return delivered

    def _already_codes(self, posting) -> set[str]:
        """The ErrorCode read as "eSite already has this payment", where it may be believed:
        only the code an operator saw this eSite answer for a repeated AddPayment (recorded
        with the duplicates-refused confirmation), and only for an attempt that re-sends a
        write that may have landed (``outcome_unknown``). A payment that was never sent, or
        that a person found missing ("not there, post it"), cannot be in eSite already: such
        an answer stops for a person. So does every code no one recorded, the sandbox's 206
        included: what a real eSite answers for a repeat is not known (docs/amsi-evidence.md).
        """
        code = self.settings.duplicates_refused_code.strip()
        if self.settings.duplicates_refused and code and posting.outcome_unknown:
            return {code}
        return set()

    def post_reversal(self, posting) -> Delivered:
        # No code is read as "already returned": nothing shows what eSite answers for a
        # repeated ReturnPayment (nor that it refuses one), and a reversal is never re-sent
        # unattended (``checks_unknown_outcomes``). The sandbox's 301 stops for a person.
        doc = self._return_doc(posting)
        return self._write(posting, "ReturnPayment", doc.xml(), set())

    def checks_unknown_outcomes(self, posting=None) -> bool:
        """Whether a posting whose last write may have landed may be sent again unattended.

        Nothing public shows that eSite refuses a repeated ClientTransactionID, nor what
        ``preliminary=1`` does, so by default it may not: the posting becomes "unconfirmed"
        and a person looks in eSite. Only once an operator has confirmed on this eSite that a
        repeated AddPayment is refused, and with which ErrorCode (the connection's
        "duplicates refused" confirmation, with who and when), is a payment simply sent
        again: that refusal is then the check (``_already_codes``), and any other answer
        stops for a person. A reversal never is: the confirmation says nothing about a
        repeated ReturnPayment, which eSite might book twice (a second NSF on the lease).
        """
        if posting is not None and posting.kind == PostingKind.REVERSAL:
            return False
        return self.settings.duplicates_refused and bool(
            self.settings.duplicates_refused_code.strip()
        )

    def find_posting(self, posting) -> Delivered | None:
        """No read-only eDex call can say whether a payment landed: send it again (only ever
        reached when ``checks_unknown_outcomes`` holds), and let eSite's refusal of the
        repeat answer."""
        return None

    def record_delivery(self, posting, delivered: Delivered) -> None:
        """Which eSite batch took the write (the reply's eSiteBatchNo), recorded in the
        transaction that marks the posting posted."""
        reply = LedgerReply(
            error_code=errors.SUCCESS,
            error_description="",
            batch_no=delivered.data.get("eSiteBatchNo", ""),
            bank_book=delivered.data.get("eSiteBankBookID", ""),
        )
        batches.record_landing(self, posting, reply)

    def confirmed_by_person(self, posting, receipt: str) -> None:
        """A person found the posting in eSite: remember which eSite batch holds it."""
        batches.record_landing(
            self, posting, LedgerReply(error_code=errors.SUCCESS, error_description="")
        )

    def explain(self, posting):
        """The console's sentences for eSite's error codes (integrations_amsi/advice.py, one
        per row of the error table); the framework's for every other reason."""
        return advice.explain(posting) or super().explain(posting)

    def where_to_look(self, posting) -> str:
        """What a person looks for in eSite to settle an unconfirmed posting."""
        payment = posting.payment
        link = AmsiLeaseLink.objects.filter(lease_id=payment.lease_id).first()
        who = f"{link.composite}" if link else f"lease #{payment.lease_id}"
        last = posting.attempt_log.order_by("-number").first()
        when = (
            last.started_at.astimezone(payment.batch.property.tz).strftime("%m/%d/%Y %H:%M")
            if last
            else "?"
        )
        created_by = self.settings.created_by
        jnl = payment.batch.batch_id
        number = batches.esite_batch_no(self.connection.pk, jnl)
        esite = f" (eSite Batch {number})" if number else ""
        if posting.kind == PostingKind.REVERSAL:
            reason, description = reversal_reason(posting.reversal)
            try:
                txn = client_transaction_id(self._payment_posting(posting))
            except PermanentError:
                txn = "?"
            what = (
                f"a reversal ({reason}, description '{description}') of "
                f"-{posting.reversal.amount} for {who}, ClientTransactionID {txn}"
            )
            where = (
                f"under External Batch {jnl}{esite} or a "
                f"separate External Batch {txn} (where eSite books a return is not known)"
            )
        else:
            what = (
                f"a payment of {payment.amount} for {who}, "
                f"ClientTransactionID {client_transaction_id(posting)}"
            )
            where = f"under External Batch {jnl}{esite}"
        return (
            f"In eSite look for {what}, sent about {when} property time: Reports > Accounting "
            f"Reports > External Deposits (By Payment) would list it {where}; Ledger > Cash "
            f"Batches (Show Batches, Created By {created_by}) lists the eDex user's batches."
        )

    # -- batches -------------------------------------------------------------------------------
    def close_batches(self, *, now: dt.datetime | None = None) -> list[str]:
        return batches.close_due_batches(self, now=now)

    # -- reconciliation (integrations.reconciliation compares) ---------------------------------
    def remote_month(self, month, report_text=None):
        """eSite's External Deposits report, By Payment: fetched, or the export uploaded."""
        return reconcile.remote_month(self, month, report_text)

    def known_batches(self, month, postings):
        """Our eSite batches of the month (AmsiBatchLink) and what landed in them."""
        return reconcile.known_batches(self.connection, month, postings)

    def expected_batch(self, posting, transaction_id, remote):
        """A reversal not recorded as landed is wherever eSite shows it (where a return lands
        is eSite's choice), else in the original payment's batch, which its ReturnPayment
        names; a payment in the batch its ClientJnlNo names."""
        if posting.kind == PostingKind.REVERSAL:
            shown = remote.batch_holding(transaction_id, negative=True)
            return shown or posting.payment.batch.batch_id
        return super().expected_batch(posting, transaction_id, remote)

    def lease_reference(self, lease) -> str:
        link = AmsiLeaseLink.objects.filter(lease=lease).first()
        return link.composite if link else ""


__all__ = ["AmsiProvider", "RetryableError"]
