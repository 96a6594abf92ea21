"""Probe a live AMSI eSite before go-live: read-only checks, each saying what it saw.

``probe(settings)`` runs the steps below against the eSite a connection (or an onboarding
manager's candidate settings) points at and returns a ``ProbeReport``; the ``amsi_probe``
command prints it, and the admin can show the same report.

1. the Leasing WSDL is reachable (network failures in words, not exception class names);
2. login and portfolio (GetPropertyList);
3. the property is in GetPropertyList (both shapes seen in production);
4. the ClientMerchantID matches what GetPropertyList says, and is an integer;
5. unit and resident counts (streamed: flat memory for a 100,000-lease property);
6. the delta query the importer uses, for the last days.

It is READ-ONLY: only Leasing reads are sent. Nothing in the Ledger service is called (no
AddPayment, ReturnPayment or UpdateSettlementData, and not its WSDL either); what only a real
payment can confirm is listed at the end, with the procedure in docs/amsi.md, "First payment on
a live eSite".

The report never holds the password: it is registered for masking and every text is masked.

The package: ``report`` (the report's shape, network failures in words), ``_probe`` (the run,
steps 1 to 4) and ``_lists`` (steps 5 and 6). Import from ``integrations_amsi.probe``.
"""

from __future__ import annotations

from ._probe import probe
from .report import (
    CONFIRMED,
    DELTA_DAYS,
    EVIDENCE_DOC,
    EVIDENCE_ROWS,
    FAIL,
    FIRST_PAYMENT_DOC,
    LEASING_READS,
    NOT_SEEN,
    OK,
    PAYMENT_ONLY,
    SKIP,
    WARN,
    WSDL_TIMEOUT,
    Evidence,
    ProbeReport,
    Step,
    network_reason,
)

__all__ = [
    "CONFIRMED",
    "DELTA_DAYS",
    "EVIDENCE_DOC",
    "EVIDENCE_ROWS",
    "FAIL",
    "FIRST_PAYMENT_DOC",
    "LEASING_READS",
    "NOT_SEEN",
    "OK",
    "PAYMENT_ONLY",
    "SKIP",
    "WARN",
    "WSDL_TIMEOUT",
    "Evidence",
    "ProbeReport",
    "Step",
    "network_reason",
    "probe",
]
