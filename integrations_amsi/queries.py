"""XMLData of the leasing reads, in one place: the importer and the probe send the same.

Parameters as the production clients sent them (docs/amsi-evidence.md): lower-case elements
under one ``<EDEX>`` root; the delta query as CoreLogic's client sent it (AmsiService +
AMSIUtil.processHR): every element in its order, dates MM/DD/YYYY, one request for the
status-change range and one for the transaction range, each with the other range empty. Not
CoreLogic's doubled ``<EDEX><EDEX>``: nothing shows eSite needs it, and every other read uses
one root (RentTrack's production shape).
"""

from __future__ import annotations

import datetime as dt

from .xmldocs import edex, mdy

DELTA_OPERATION = "GetResidentsByStatusChangeOrTransactionDate"


def units_query(property_id: str) -> str:
    return edex(propertyid=property_id, includeallstatuses=1)


def residents_query(property_id: str, status: str) -> str:
    return edex(
        propertyid=property_id,
        leasestatus=status,
        includeprimaryaddress=0,
        includecontactdetails=1,
        includerecurringcharges=0,
    )


def delta_queries(property_id: str, start: dt.date, end: dt.date) -> list[tuple[str, str]]:
    """[(what, XMLData)]: the status-change request, then the transaction request."""
    dates, empty = (mdy(start), mdy(end)), ("", "")
    out = []
    for what, (status_range, transaction_range) in (
        ("status changes", (dates, empty)),
        ("transactions", (empty, dates)),
    ):
        out.append(
            (
                what,
                edex(
                    propertyid=property_id,
                    statuschangedatefrom=status_range[0],
                    statuschangedateto=status_range[1],
                    transactiondatefrom=transaction_range[0],
                    transactiondateto=transaction_range[1],
                ),
            )
        )
    return out
