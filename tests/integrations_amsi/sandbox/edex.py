"""Small helpers for sandbox tests: build eDex documents, call through zeep, read results."""

from __future__ import annotations

from decimal import Decimal

import zeep
from lxml import etree

from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.sandbox.xmlsafe import start_tag

# Demo portfolio keys (see integrations_amsi/sandbox/seed.py: index % 25 -> special case)
NORMAL = ("001", "01", "101", "1")
BLOCKED = ("001", "01", "104", "4")
NO_CHECKS = ("001", "01", "106", "6")
HOLD = ("001", "01", "108", "8")
DUP_RESI = ("001", "02", "101", "1")  # same ResiID "1" as NORMAL, other unit


def payment_xml(key: tuple[str, str, str, str] = NORMAL, **attrs: str) -> str:
    data = {
        "PropertyID": key[0],
        "BldgID": key[1],
        "UnitID": key[2],
        "ResiID": key[3],
        "ClientMerchantID": "M1001",
        "ClientTransactionID": "T1",
        "ClientTransactionDate": "02/15/2016",
        "Amount": "100.00",
        "ClientJnlNo": "5001",
        "Description": "Rent payment",
        "PaymentType": "P",
        "CheckNo": "",
        "ChargeIncCode": "",
        "ChargeDateFrom": "",
        "ChargeDateThru": "",
    }
    data.update(attrs)
    return "<Payments>" + start_tag("Payment", data, close=True) + "</Payments>"


def return_xml(txn: str, reason: str, jnl: str = "", description: str = "") -> str:
    return (
        "<Payments><Payment>"
        f"<ClientTransactionID>{txn}</ClientTransactionID><Reason>{reason}</Reason>"
        f"<ClientJnlNo>{jnl}</ClientJnlNo><Description>{description}</Description>"
        "</Payment></Payments>"
    )


def settle_xml(jnl: str, amount: str, merchant: str = "M1001") -> str:
    return (
        f"<EDEX><ExternalJnlNo>{jnl}</ExternalJnlNo><ClientMerchantId>{merchant}</ClientMerchantId>"
        f"<SettlementAmount>{amount}</SettlementAmount><SettlementDate>02/15/2016</SettlementDate>"
        "<ApprovalCode>OK</ApprovalCode></EDEX>"
    )


class Edex:
    """Calls the sandbox through zeep, as the provider will."""

    def __init__(self, server: SandboxServer, leasing: zeep.Client, ledger: zeep.Client) -> None:
        self.server = server
        self.leasing = leasing
        self.ledger = ledger

    def read(self, op: str, xml: str, **creds: str) -> etree._Element:
        c = {**self.server.credentials, **creds}
        return etree.fromstring(getattr(self.leasing.service, op)(**c, XMLData=xml).encode())

    def write(self, op: str, xml: str, preliminary: int = 0, **creds: str) -> etree._Element:
        c = {**self.server.credentials, **creds}
        result = getattr(self.ledger.service, op)(**c, preliminary=preliminary, XMLData=xml)
        doc = etree.fromstring(result.encode())
        return doc[0]

    def pay(self, key: tuple[str, str, str, str] = NORMAL, preliminary: int = 0, **attrs: str):
        return self.write("AddPayment", payment_xml(key, **attrs), preliminary)

    def ret(
        self, txn: str, reason: str, jnl: str = "", description: str = "", preliminary: int = 0
    ):
        return self.write("ReturnPayment", return_xml(txn, reason, jnl, description), preliminary)

    def settle(self, jnl: str, amount: str, merchant: str = "M1001", preliminary: int = 0):
        return self.write("UpdateSettlementData", settle_xml(jnl, amount, merchant), preliminary)


def code(el: etree._Element) -> int:
    return int(el.findtext("ErrorCode"))


def leasing_error(doc: etree._Element) -> int:
    assert doc.tag == "InternetTrafficResponse", etree.tostring(doc)
    return int(doc.findtext("Error/ErrorCode"))


def money(value: str) -> Decimal:
    return Decimal(value)
