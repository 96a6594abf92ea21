"""The closed table of known eDex error codes (dj-stripe's _stripe_errors.py pattern).

Each known code is a row saying what the outbox should do with it. eSite's codes are not
published. One row is evidence from production (code 1, "Validation of user credentials
failed.", docs/amsi-evidence.md); every other row is the sandbox's own code, kept so the
sandbox's refusals are sorted the same way a real refusal would be. A code that is not in the
table is never guessed at: it raises UnknownRemoteError, and the posting waits for a person
("needs attention"). A login refusal pauses the whole connection instead (LoginRefused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from integrations.exceptions import (
    IntegrationError,
    LoginRefused,
    PermanentError,
    RetryableError,
    UnknownRemoteError,
)

from . import PROVIDER_ID

RETRYABLE = "retryable"
PERMANENT = "permanent"
LOGIN = "login"  # permanent, but about the connection rather than the record


@dataclass(frozen=True)
class KnownError:
    code: str
    kind: str
    meaning: str


KNOWN_ERRORS: dict[str, KnownError] = {
    row.code: row
    for row in [
        # Evidence: the reply production clients met for a bad UserID or Password.
        KnownError("1", LOGIN, "Validation of user credentials failed."),
        # The sandbox's own codes from here on (no public evidence of eSite's).
        KnownError("101", LOGIN, "unknown PortfolioName"),
        KnownError("102", PERMANENT, "unknown property"),
        KnownError("103", PERMANENT, "no data found"),
        KnownError("104", PERMANENT, "XMLData was not a well-formed document"),
        KnownError("105", PERMANENT, "operation not supported"),
        KnownError("200", PERMANENT, "unknown lease (PropertyID, BldgID, UnitID, ResiID)"),
        KnownError("201", PERMANENT, "Block Payment Access is set on the lease in AMSI"),
        KnownError("202", PERMANENT, "lease credit status is Hold or Restricted in AMSI"),
        KnownError("203", PERMANENT, "lease is No Checks in AMSI: bank payments refused"),
        KnownError("204", PERMANENT, "amount refused"),
        KnownError("205", PERMANENT, "ClientJnlNo refused"),
        # The sandbox's "already posted" and "already returned": never read as "it is there"
        # on their own (only the code an operator recorded is: AmsiProvider._already_codes).
        KnownError("206", PERMANENT, "ClientTransactionID already posted"),
        KnownError("207", PERMANENT, "ClientMerchantID does not match the property"),
        KnownError("208", PERMANENT, "a required field is missing or invalid"),
        KnownError("300", PERMANENT, "unknown ClientTransactionID: nothing to reverse"),
        KnownError("301", PERMANENT, "transaction already returned"),
        KnownError("302", PERMANENT, "reversal reason refused"),
        KnownError("400", PERMANENT, "settlement amount does not equal the batch total"),
        KnownError("401", PERMANENT, "unknown external batch"),
    ]
}

# The codes production clients met from a real eSite (docs/amsi-evidence.md); the rest of the
# table is the sandbox's.
SEEN_CODES = frozenset({"1"})
# The code of a reply that is not an error (an empty ErrorCode means the same).
SUCCESS = "0"
NO_DATA = "103"
UNKNOWN_PROPERTY = "102"
UNKNOWN_PORTFOLIO = "101"
DUPLICATE_TRANSACTION = "206"
ALREADY_RETURNED = "301"
UNKNOWN_BATCH = "401"
# Our own code (not eSite's) on a connection test that failed because the login was refused.
TEST_LOGIN_REFUSED = "LOGIN"


_PORTFOLIO_REFUSED = re.compile(r"verify portfolio name", re.IGNORECASE)


def classify(code: str) -> KnownError | None:
    return KNOWN_ERRORS.get(str(code).strip())


def _meaning_without_text(known: KnownError | None) -> str:
    """What to say for a known code eSite sent without an ErrorDescription: the production
    evidence's own text for code 1; for the sandbox's codes, their meaning there, said to be
    the sandbox's (what a real eSite means by them is not known)."""
    if known is None:
        return ""
    if known.code in SEEN_CODES:
        return known.meaning
    return f"no text (in the sandbox, code {known.code} means: {known.meaning})"


def error_for(
    code: str,
    description: str,
    *,
    operation: str,
    record: str,
    response: str = "",
    request: str = "",
    remote_reference: str = "",
) -> IntegrationError:
    """The exception for an eDex error code, by the table; unknown codes are never dropped."""
    known = classify(code)
    context = {
        "provider": PROVIDER_ID,
        "operation": operation,
        "record": record,
        "code": str(code),
        "response": response,
        "request": request,
        "remote_reference": remote_reference,
    }
    err = _error(known, description or _meaning_without_text(known), context)
    err.remote_text = description  # eSite's own words (``remote_text``), empty when none
    return err


def _error(known: KnownError | None, text: str, context: dict) -> IntegrationError:
    if known is None and _PORTFOLIO_REFUSED.search(text):
        # The text a production client met for a bad PortfolioName; its code is not known.
        return LoginRefused(f"AMSI refused the portfolio: {text}", **context)
    if known is None:
        return UnknownRemoteError(
            f"AMSI answered an error code this integration does not know: {text or 'no text'}",
            **context,
        )
    if known.kind == RETRYABLE:
        return RetryableError(f"AMSI asked to try again: {text}", **context)
    if known.kind == LOGIN:
        return LoginRefused(f"AMSI refused the login: {text}", **context)
    return PermanentError(f"AMSI refused: {text}", **context)


def remote_text(err: IntegrationError) -> str:
    """eSite's own words for an error: its ErrorDescription where ``error_for`` built the error
    (empty when it sent none: the message then holds the table's words, not eSite's), else
    the error's message (a SOAP Fault, a transport failure)."""
    return getattr(err, "remote_text", err.message)


def portfolio_refusal(err: IntegrationError) -> str:
    """How a login refusal points at the portfolio: "said" when eSite's own words name it,
    "code" when only code 101 does (the sandbox's code for an unknown portfolio: what a real
    eSite means by it is not known), "" when neither (a refused UserID or password)."""
    if "portfolio" in remote_text(err).lower():
        return "said"
    return "code" if err.code == UNKNOWN_PORTFOLIO else ""


def is_error_document(err: BaseException) -> bool:
    """An eDex error document (not a transport failure, not a login refusal): for a resident
    list read, production clients took it for an empty list."""
    return (
        isinstance(err, IntegrationError)
        and bool(err.code)
        and not isinstance(err, LoginRefused)
        and err.code != UNKNOWN_PROPERTY
    )
