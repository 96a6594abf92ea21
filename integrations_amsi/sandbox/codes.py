"""The sandbox's eDex error codes: its own table (the provider's allowlist, errors.py, lists
them again with what each means for a posting: the sandbox stands in for eSite and knows
nothing of the provider).

Only two real eSite codes are known from production clients: 0 (success) and 1 "Validation of
user credentials failed." (AMSI_EDEX.md, "Production evidence"). The others are the sandbox's
own, stable and distinct so the provider can sort them into retryable / permanent / already-done.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """code, NAME, description (the description is what goes in ErrorDescription).

    A plain enum, not Django's IntegerChoices: the sandbox runs without Django."""

    description: str

    def __new__(cls, value: int, description: str) -> ErrorCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    SUCCESS = 0, "Success"
    INVALID_LOGIN = 1, "Validation of user credentials failed."
    # The text is the one a production client met for a bad portfolio (its code is not known).
    UNKNOWN_PORTFOLIO = (
        101,
        (
            "An error occured while creating webservice objects to start the process. "
            "Please verify portfolio name. There is no row at position 0."
        ),
    )
    UNKNOWN_PROPERTY = 102, "Unknown property"
    NO_DATA = 103, "No data found"
    MALFORMED_XMLDATA = 104, "XMLData is not a well-formed document"
    NOT_SUPPORTED = 105, "Operation not supported by the sandbox"
    UNKNOWN_LEASE = 200, "Unknown lease (PropertyID, BldgID, UnitID, ResiID)"
    PAYMENT_ACCESS_BLOCKED = 201, "Lease has Block Payment Access set"
    CREDIT_STATUS_HOLD = 202, "Lease credit status does not allow payments (Hold/Restricted)"
    NO_CHECKS = 203, "Lease credit status is No Checks: PaymentType C not allowed"
    INVALID_AMOUNT = 204, "Amount must be a positive decimal with at most 2 places"
    INVALID_JNLNO = 205, "ClientJnlNo must be digits only"
    DUPLICATE_TRANSACTION = 206, "Duplicate ClientTransactionID: already posted"
    MERCHANT_MISMATCH = 207, "ClientMerchantID does not match the property"
    INVALID_FIELD = 208, "A required field is missing or invalid"
    UNKNOWN_TRANSACTION = 300, "Unknown ClientTransactionID: nothing to return"
    ALREADY_RETURNED = 301, "Transaction has already been returned"
    INVALID_REASON = 302, "Reason must be NSF, ChargeBack or Reverse"
    SETTLEMENT_MISMATCH = 400, "SettlementAmount does not equal the batch total"
    UNKNOWN_BATCH = 401, "Unknown external batch (ExternalJnlNo)"


class SandboxError(Exception):
    """A business refusal: it travels inside the <Operation>Result, never as a SOAP fault."""

    def __init__(self, code: ErrorCode, detail: str = "", **extra: str) -> None:
        self.code = code
        self.detail = detail
        self.extra = extra
        super().__init__(self.description)

    @property
    def description(self) -> str:
        return f"{self.code.description}: {self.detail}" if self.detail else self.code.description


class DotNetFault(Exception):
    """An exception thrown inside an ASP.NET asmx method: HTTP 500 with a SOAP Fault.

    asmx wraps it as "Server was unable to process request. ---> <the exception's message>"
    with faultcode soap:Server (SOAP 1.2: soap:Receiver).
    """

    FORMAT = "Input string was not in a correct format."
    OVERFLOW = "Value was either too large or too small for an Int32."

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Server was unable to process request. ---> {message}")
