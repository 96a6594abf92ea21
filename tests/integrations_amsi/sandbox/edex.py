"""Small helpers for sandbox tests: build eDex documents, call through zeep, read results."""

from __future__ import annotations

from decimal import Decimal

import httpx
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
        "ClientMerchantID": "1001",
        "ClientTransactionID": "9001",
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


def return_xml(
    txn: str, reason: str, jnl: str = "", description: str = "", amount: str | None = None
) -> str:
    extra = f"<Amount>{amount}</Amount>" if amount is not None else ""
    return (
        "<Payments><Payment>"
        f"<ClientTransactionID>{txn}</ClientTransactionID><Reason>{reason}</Reason>"
        f"<ClientJnlNo>{jnl}</ClientJnlNo><Description>{description}</Description>{extra}"
        "</Payment></Payments>"
    )


def settle_xml(jnl: str, amount: str, merchant: str = "1001") -> str:
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
        # a whole-call refusal is an InternetTrafficResponse, not <Payments>/<Batches>
        return doc if doc.tag == "InternetTrafficResponse" else doc[0]

    def pay(self, key: tuple[str, str, str, str] = NORMAL, preliminary: int = 0, **attrs: str):
        return self.write("AddPayment", payment_xml(key, **attrs), preliminary)

    def ret(
        self, txn: str, reason: str, jnl: str = "", description: str = "", preliminary: int = 0
    ):
        return self.write("ReturnPayment", return_xml(txn, reason, jnl, description), preliminary)

    def settle(self, jnl: str, amount: str, merchant: str = "1001", preliminary: int = 0):
        return self.write("UpdateSettlementData", settle_xml(jnl, amount, merchant), preliminary)


def code(el: etree._Element) -> int:
    """ErrorCode of a <Payment>/<EDEX> reply item or of an InternetTrafficResponse."""
    if el.tag == "InternetTrafficResponse":
        return leasing_error(el)
    return int(el.findtext("ErrorCode"))


def leasing_error(doc: etree._Element) -> int:
    assert doc.tag == "InternetTrafficResponse", etree.tostring(doc)
    return int(doc.findtext("Error/ErrorCode"))


def money(value: str) -> Decimal:
    return Decimal(value)


# -- raw SOAP over loopback HTTP (byte-level checks, faults) ------------------------------------

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TNS = "http://tempuri.org/"


def envelope(op: str, xmldata: str, creds: dict[str, str], version: str = SOAP11) -> str:
    """An envelope as the production client sent it: XMLData in CDATA, no preliminary."""
    c = creds
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{version}"><s:Body>'
        f'<{op} xmlns="{TNS}"><UserID>{c["UserID"]}</UserID><Password>{c["Password"]}</Password>'
        f"<PortfolioName>{c['PortfolioName']}</PortfolioName>"
        f"<XMLData><![CDATA[{xmldata}]]></XMLData></{op}></s:Body></s:Envelope>"
    )


def soap_post(
    server: SandboxServer,
    service: str,
    op: str,
    xmldata: str,
    version: str = SOAP11,
    **creds: str,
) -> httpx.Response:
    url = server.leasing_url if service == "leasing" else server.ledger_url
    body = envelope(op, xmldata, {**server.credentials, **creds}, version)
    if version == SOAP11:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{TNS}{op}"'}
    else:
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{TNS}{op}"'}
    return httpx.post(url, content=body.encode(), headers=headers, timeout=30)


def result_text(response: httpx.Response, op: str) -> str:
    """The <Op>Result string of an HTTP 200 reply."""
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content).findtext(f".//{{{TNS}}}{op}Result")


def fault_bytes(message: str, version: str = SOAP11) -> bytes:
    """The HTTP 500 body an ASP.NET asmx method that throws answers with."""
    ns = (
        f'xmlns:soap="{version}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    )
    text = f"Server was unable to process request. ---&gt; {message}"
    if version == SOAP11:
        fault = (
            f"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>{text}</faultstring>"
            "<detail /></soap:Fault>"
        )
    else:
        fault = (
            "<soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="en">{text}</soap:Text></soap:Reason>'
            "<soap:Detail /></soap:Fault>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope {ns}><soap:Body>{fault}'
        "</soap:Body></soap:Envelope>"
    ).encode()


def item(response: httpx.Response, op: str) -> etree._Element:
    """The first <Payment>/<EDEX> of a ledger reply, or the InternetTrafficResponse."""
    doc = etree.fromstring(result_text(response, op).encode())
    return doc if doc.tag == "InternetTrafficResponse" else doc[0]


def pay(server, version: str = SOAP11, **attrs: str) -> httpx.Response:
    return soap_post(server, "ledger", "AddPayment", payment_xml(NORMAL, **attrs), version)
