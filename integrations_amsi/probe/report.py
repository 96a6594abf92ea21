"""The probe's report: steps, evidence rows, what only a payment can confirm, and network
failures in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrations.logging import mask

from .. import transport

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
CONFIRMED, NOT_SEEN = "confirmed", "not seen"

WSDL_TIMEOUT = 10.0  # seconds for the WSDL download (the client uses the same)
DELTA_DAYS = 7
FIRST_PAYMENT_DOC = 'docs/amsi.md, "First payment on a live eSite"'
EVIDENCE_DOC = "docs/amsi-evidence.md"

LEASING_READS = (
    "GetPropertyList",
    "GetPropertyUnits",
    "GetPropertyResidents",
    "GetResidentsByStatusChangeOrTransactionDate",
)

# What only a real payment can confirm (procedure: docs/amsi.md, "First payment on a live eSite").
PAYMENT_ONLY = (
    "AddPayment is accepted with this ClientMerchantID and our integer ClientTransactionID and "
    "ClientJnlNo, and opens an External cash batch Created By the eDex user (Ledger > Cash "
    "Batches; its number is the reply's eSiteBatchNo, and External Deposits lists it under our "
    "batch id as External Batch)",
    "UpdateSettlementData closes that batch with the batch total (its Approve check mark, "
    "which means still open, should go)",
    "ReturnPayment reverses the payment, and the settlement sent after a return is accepted",
    "whether eSite refuses a repeated ClientTransactionID (the connection's 'duplicates refused' "
    "confirmation: who and when)",
)

# The evidence table's rows (docs/amsi-evidence.md), by short stable name.
EVIDENCE_ROWS = (
    "login error reply",
    "GetPropertyList shape",
    "ClientMerchantID type",
    "lease status codes",
    "empty lists",
    "delta query",
)


@dataclass
class Step:
    number: int
    name: str
    title: str
    status: str
    detail: str
    fix: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "detail": mask(self.detail),
            "fix": mask(self.fix),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Evidence:
    row: str
    status: str
    seen: str

    def as_dict(self) -> dict[str, str]:
        return {"row": self.row, "status": self.status, "seen": mask(self.seen)}


@dataclass
class ProbeReport:
    target: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    payment_only: tuple[str, ...] = PAYMENT_ONLY

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.steps if s.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def fix(self) -> str:
        """One sentence naming what to fix (the first failure's), or ""."""
        failures = self.failures
        return mask(failures[0].fix) if failures else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": {k: mask(v) for k, v in self.target.items()},
            "read_only": True,
            "steps": [s.as_dict() for s in self.steps],
            "evidence": [e.as_dict() for e in self.evidence],
            "evidence_doc": EVIDENCE_DOC,
            "payment_only": list(self.payment_only),
            "first_payment_doc": FIRST_PAYMENT_DOC,
            "fix": self.fix,
        }


# -- network failures in words ---------------------------------------------------------------


def network_reason(err: BaseException, timeout: float = WSDL_TIMEOUT) -> str:
    """A transport failure as words a person can act on (transport.network_reason)."""
    return transport.network_reason(err, timeout)


_TITLES = {
    1: "Leasing WSDL",
    2: "Login and portfolio",
    3: "Property in GetPropertyList",
    4: "ClientMerchantID",
    5: "Units and residents",
    6: "Delta query",
}
