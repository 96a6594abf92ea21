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
from integrations.providers.base import AccountingProvider, ConnectionCheck, Delivered

from . import errors
from .client import get_client
from .conf import settings_for
from .mapping import BadRecord
from .models import AmsiBatchLink, AmsiLeaseLink
from .xmldocs import PaymentDoc, ReturnDoc

log = logging.getLogger(__name__)

PAYMENT_TYPE = {"card": "P", "ach": "C"}  # P "Plastic", C check/bank


def reversal_reason(reversal) -> tuple[str, str]:
    """(Reason, Description) for ReturnPayment, by the business rules (rule 5)."""
    ref = reversal.public_id  # our reversal key: ReturnPayment has no id field of its own
    if reversal.kind == "chargeback":
        return "ChargeBack", f"CHARGE BACK card payment reversed ({ref})"
    if reversal.kind == "refund":
        return "Reverse", f"refunded ({ref})"
    if reversal.kind == "void":
        return "Reverse", f"voided ({ref})"
    if reversal.kind == "return":
        note = f" {reversal.note}" if reversal.note else ""
        return "NSF", f"{reversal.return_code}{note} ({ref})"[:200]
    raise ValueError(f"unknown reversal kind {reversal.kind!r}")


class AmsiProvider(AccountingProvider):
    id = "amsi"
    name = "AMSI eSite (eDex)"
    has_own_admin = True  # integrations_amsi.admin: the AMSI connection form

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

    # -- connection --------------------------------------------------------------------------
    def test_connection(self) -> ConnectionCheck:
        try:
            return ConnectionCheck(True, self.client.test())
        except ConnectionTestFailed as err:
            return ConnectionCheck(False, err.message)
        except IntegrationError as err:
            return ConnectionCheck(False, mask(str(err)))

    # -- import and resync -------------------------------------------------------------------
    def sync(self, run, *, lease_id=None, since=None, progress=None) -> None:
        from .importer import Importer

        importer = Importer(self.connection, run, self.client, self.settings, progress)
        try:
            importer.execute(lease_id=lease_id, since=since)
        except BadRecord as err:
            raise PermanentError(err.message, provider=self.id, record=err.record) from None
        except BaseException:
            # Everything was rolled back: the counts must not claim otherwise.
            run.created = run.updated = run.unchanged = run.deactivated = 0
            run.changes = []
            raise

    # -- postings ----------------------------------------------------------------------------
    def _link(self, payment) -> AmsiLeaseLink:
        link = AmsiLeaseLink.objects.filter(lease_id=payment.lease_id).first()
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
        payment = posting.payment
        link = self._link(payment)
        return PaymentDoc(
            property_id=link.property_id,
            bldg_id=link.bldg_id,
            unit_id=link.unit_id,
            resi_id=link.resi_id,
            merchant_id=self.settings.merchant_id,
            transaction_id=posting.key,
            transaction_date=payment.business_day,
            amount=payment.amount,
            jnl_no=payment.batch.batch_id,
            description=f"Online {payment.get_method_display()} payment {payment.public_id[:12]}",
            payment_type=PAYMENT_TYPE[payment.method],
        )

    def _return_doc(self, posting) -> ReturnDoc:
        reversal = posting.reversal
        reason, description = reversal_reason(reversal)
        original = posting.payment.postings.filter(kind="payment").first()
        return ReturnDoc(
            transaction_id=original.key if original else posting.payment.reference.hex,
            reason=reason,
            jnl_no=reversal.batch.batch_id,
            description=description,
        )

    def _record_batch(self, batch, reply) -> None:
        link, _ = AmsiBatchLink.objects.get_or_create(
            batch=batch, defaults={"connection": self.connection, "client_jnl_no": batch.batch_id}
        )
        changed = []
        if reply.batch_no and link.esite_batch_no != reply.batch_no:
            link.esite_batch_no = reply.batch_no
            changed.append("esite_batch_no")
        if reply.bank_book and link.bank_book != reply.bank_book:
            link.bank_book = reply.bank_book
            changed.append("bank_book")
        if changed:
            link.save(update_fields=changed)

    def _write(self, posting, operation: str, xml: str, subject_batch, already_codes: set[str]):
        reply, text = self.client.ledger(operation, xml, record=posting.key)
        if reply.ok or reply.error_code in already_codes:
            self._record_batch(subject_batch, reply)
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
        )

    def post_payment(self, posting) -> Delivered:
        doc = self._payment_doc(posting)
        return self._write(posting, "AddPayment", doc.xml(), posting.payment.batch, {"206"})

    def post_reversal(self, posting) -> Delivered:
        doc = self._return_doc(posting)
        return self._write(posting, "ReturnPayment", doc.xml(), posting.reversal.batch, {"301"})

    def find_posting(self, posting) -> Delivered | None:
        """Did an earlier attempt land? Ask with ``preliminary=1``, which writes nothing.

        eSite refuses a repeated ClientTransactionID (AddPayment) or a second return of one
        transaction (ReturnPayment); a validation that passes means it is not there yet.
        """
        if posting.kind == "reversal":
            operation, xml, found_code = "ReturnPayment", self._return_doc(posting).xml(), "301"
            batch = posting.reversal.batch
        else:
            operation, xml, found_code = "AddPayment", self._payment_doc(posting).xml(), "206"
            batch = posting.payment.batch
        reply, text = self.client.ledger(operation, xml, record=posting.key, preliminary=True)
        if reply.error_code == found_code:
            self._record_batch(batch, reply)
            return Delivered(
                remote_reference=reply.evolution_reference,
                request_document=mask(xml),
                response_document=text,
                data={"eSiteBatchNo": reply.batch_no, "eSiteBankBookID": reply.bank_book},
            )
        known = errors.classify(reply.error_code)
        if reply.ok or (known and known.kind == errors.PERMANENT):
            return None
        raise errors.error_for(
            reply.error_code,
            reply.error_description,
            operation=operation,
            record=posting.key,
            response=text,
        )

    # -- batches -------------------------------------------------------------------------------
    def close_batches(self, *, now: dt.datetime | None = None) -> list[str]:
        from .batches import close_due_batches

        return close_due_batches(self, now=now)

    def reconcile(self, month, report_text=None):
        from .reconcile import reconcile_month

        return reconcile_month(self, month, report_text)

    def lease_reference(self, lease) -> str:
        link = AmsiLeaseLink.objects.filter(lease=lease).first()
        return link.composite if link else ""


__all__ = ["AmsiProvider", "RetryableError"]
