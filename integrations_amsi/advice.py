"""What the posting console says for each eSite error code (``AmsiProvider.explain``).

One answer per row of the closed error table (errors.KNOWN_ERRORS; a test checks none is
missing), plus the provider's own refusal before anything is sent (``NOT_LINKED``). What
happened is built from the row (its meaning, its kind); what to do is written here. Code 1 is
real eSite's (seen in production); every other code is the sandbox's, and the console says so:
a live eSite's own reply text, shown beside it, is then the better guide.
"""

from __future__ import annotations

from integrations.advice import Advice, refused_code
from integrations.models import PostingKind, PostingState

from . import errors

NOT_LINKED = "NOT_LINKED"
EVIDENCE_CODES = errors.SEEN_CODES  # seen from a real eSite (docs/amsi-evidence.md)

_LOGIN = (
    "Ask AMSI for this portfolio's eDex UserID and password, enter them on the connection's "
    "page, save, then run 'Test connection': once it passes, the waiting postings are sent."
)
_BY_HAND = (
    "if it cannot be sent, enter it in eSite by hand, the way the property enters a payment "
    "taken outside the integration (whether eSite lets a person add it to our External batch "
    "is not known), and mark it resolved with a note; if the payment was refunded or voided "
    "and should never reach eSite, abandon it."
)

WHAT_TO_DO: dict[str, str] = {
    "1": _LOGIN,
    "101": (
        "Check the PortfolioName on the connection's page against AMSI's, exactly as AMSI "
        "wrote it, save, then run 'Test connection': the waiting postings are then sent."
    ),
    "102": (
        "The connection's PropertyId is not in this portfolio: correct it on the connection's "
        "page ('Test connection' lists the portfolio's properties), then retry."
    ),
    "103": (
        "eSite found nothing for the lease or property the request names: check the lease's "
        "link ('Sync this lease now') and the connection's PropertyId, then retry; " + _BY_HAND
    ),
    "104": (
        "The document the integration built was refused as malformed: a bug. Report it with "
        "the request document below; retry once the fix is deployed; " + _BY_HAND
    ),
    "105": (
        "The call is not offered (the sandbox's answer for an operation it does not have): "
        "read eSite's own reply text below and ask AMSI whether this eDex user may make the "
        "call for the portfolio, then retry; " + _BY_HAND
    ),
    "200": (
        "The lease link (PropertyId-BldgID-UnitID-ResiID) names no lease in eSite: the "
        "resident may have moved or been re-keyed. Run 'Sync this lease now' on the lease, or "
        "link it again with its ResiID, then retry; " + _BY_HAND
    ),
    "201": (
        "The lease has Block Payment Access in eSite (no online payments); the payment was "
        "taken before the block reached the platform. Lift the block in eSite and retry, "
        "or " + _BY_HAND
    ),
    "202": (
        "The lease's credit status in eSite is Hold or Restricted (no payments). Change it in "
        "eSite and retry, or " + _BY_HAND
    ),
    "203": (
        "The lease is No Checks (cards only) in eSite, so it takes no bank payment. Lift No "
        "Checks in eSite and retry, or " + _BY_HAND
    ),
    "204": (
        "eSite refused the amount: compare it with the payment (below) and the lease's "
        "balance in eSite; retry if eSite changed, else " + _BY_HAND
    ),
    "205": (
        "eSite refused our batch id as ClientJnlNo: look for that External Batch in eSite "
        "(Reports > Accounting Reports > External Deposits lists it by our batch id) and see "
        "whether it was closed, then retry; " + _BY_HAND
    ),
    "206": (
        "eSite answered that it already has this ClientTransactionID (the sandbox's code for "
        "a repeat; what a real eSite means by it is not known unless the connection's "
        "duplicate check recorded it). Nothing was counted as posted: look in eSite's batch "
        "for the payment. There once: mark the posting resolved with its receipt. Not there: "
        "report the answer; " + _BY_HAND
    ),
    "207": (
        "The connection's ClientMerchantID is not this property's in eSite: it is the payment "
        "company's own merchant (group) id for the property, set up on both sides; correct it "
        "on the connection's page or have the property's eSite set-up corrected, then retry."
    ),
    "208": (
        "A field eSite requires was missing or invalid (see the request document below): "
        "usually the lease link or a connection setting. Fix it, then retry; if the document "
        "looks right, report it; " + _BY_HAND
    ),
    "300": (
        "eSite has no payment with the ClientTransactionID this reversal names: the payment "
        "never reached eSite through the integration. If the payment is not in eSite at all, "
        "abandon this reversal (there is nothing to reverse); if someone entered the payment "
        "by hand, enter the reversal by hand too and mark it resolved."
    ),
    "301": (
        "eSite answered that this payment is already returned (the sandbox's code; what a "
        "real eSite answers for a repeated return is not known). Nothing was counted as "
        "posted: look at the lease's ledger in eSite. The return there once: mark the "
        "reversal resolved with its receipt. Not there: report the answer; " + _BY_HAND
    ),
    "302": (
        "eSite refused the reversal's reason (ChargeBack, Reverse or NSF): enter the reversal "
        "in eSite by hand with a reason it takes and mark it resolved; report the refusal."
    ),
    "400": (
        "A settlement, not a posting: the batch's total in eSite differs from ours. Reconcile "
        "the month (Batch Deposit Reports > Reconcile) to see which payment differs."
    ),
    "401": (
        "eSite does not know the External batch: reconcile the month to see where the "
        "batch's payments landed."
    ),
    NOT_LINKED: (
        "Link the lease to its AMSI lease (the lease's 'Link to the accounting system's "
        "lease' action, with the ResiID), then retry; " + _BY_HAND
    ),
}


def _source(code: str) -> str:
    if code in EVIDENCE_CODES:
        return "a code seen from a real eSite"
    return (
        "a code of the sandbox: real eSite's codes other than 1 are not published, so a live "
        "eSite's reply text is the better guide"
    )


def _operation(posting) -> str:
    return "ReturnPayment" if posting.kind == PostingKind.REVERSAL else "AddPayment"


def explain(posting) -> Advice | None:
    """The answer for a posting eSite refused with a code of the table (or that was never
    sent for want of a lease link); None: the framework's answer applies."""
    code = refused_code(posting)
    login = errors.classify(posting.error_code) if posting.error_code else None
    if (
        not code
        and login is not None
        and login.kind == errors.LOGIN
        and posting.connection.paused_at is not None
        and posting.state in (PostingState.PENDING, PostingState.RETRYING)
    ):
        return Advice(
            f"eSite refused the connection's login with code {login.code}, '{login.meaning}' "
            f"({_source(login.code)}). Every posting of the connection waits; none spends an "
            "attempt.",
            WHAT_TO_DO[login.code],
        )
    if code == NOT_LINKED:
        return Advice(
            f"Not sent to eSite: lease #{posting.payment.lease_id} is not linked to an AMSI "
            "lease (no ResiID), so eSite would not know whose payment it is.",
            WHAT_TO_DO[NOT_LINKED],
        )
    known = errors.classify(code) if code else None
    if known is None:
        return None
    return Advice(
        f"eSite refused the {_operation(posting)} with code {code}, '{known.meaning}' "
        f"({_source(code)}).",
        WHAT_TO_DO[code],
    )
