"""Variants: one test per value over real loopback HTTP, and the control API (return_batch and
the production replay: test_return_batch.py; the CLI flag: test_cli.py)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from lxml import etree

from integrations_amsi.sandbox.codes import ErrorCode
from integrations_amsi.sandbox.server import Sandbox
from integrations_amsi.sandbox.testing import SandboxServer
from integrations_amsi.sandbox.variants import VARIANTS, defaults

from .edex import (
    NORMAL,
    SOAP11,
    SOAP12,
    code,
    fault_bytes,
    item,
    pay,
    payment_xml,
    result_text,
    return_xml,
    settle_xml,
    soap_post,
)

REPO = Path(__file__).resolve().parents[3]
LOGIN_DOC = (
    "<InternetTrafficResponse><webservice>{service}</webservice><webmethod>{op}</webmethod>"
    "<Error><ErrorCode>1</ErrorCode><ErrorDescription>Validation of user credentials failed."
    "</ErrorDescription></Error></InternetTrafficResponse>"
)
FORMAT = "Input string was not in a correct format."
OVERFLOW = "Value was either too large or too small for an Int32."


def property_list(server) -> str:
    return result_text(soap_post(server, "leasing", "GetPropertyList", ""), "GetPropertyList")


def balance(control) -> str:
    return control.lease(*NORMAL)["attributes"]["EndBalance"]


# -- the table and the control API ------------------------------------------------------------


def test_table_defaults_are_the_first_values_and_every_value_is_described():
    assert defaults() == {
        "ids": "int32",
        "duplicates": "refuse",
        "preliminary": "validate",
        "login_error": "document",
        "empty_list": "error",
        "property_list": "attributes",
        "return_batch": "separate",
    }
    for variant in VARIANTS.values():
        assert variant.summary and all(text for _, text in variant.values)


def test_control_api_reads_sets_and_refuses_variants(amsi_sandbox, sandbox_control):
    got = sandbox_control.client.get("/sandbox/variants").json()
    assert got["variants"] == defaults()
    assert got["allowed"]["ids"]["allowed"] == ["int32", "lenient"]
    assert got["allowed"]["return_batch"]["default"] == "separate"
    assert "Int32.Parse" in got["allowed"]["ids"]["values"]["int32"]
    assert sandbox_control.set_variants(ids="lenient", duplicates="accept")["ids"] == "lenient"
    assert sandbox_control.variants() == {**defaults(), "ids": "lenient", "duplicates": "accept"}
    for body, words in (
        ({"nope": "x"}, ["unknown variant 'nope'", "ids=int32|lenient"]),
        ({"ids": "int64"}, ["variant ids cannot be 'int64'", "allowed: int32|lenient"]),
        ({"ids": 1}, ["variant ids cannot be 1"]),
        # all-or-nothing: the valid part of a refused body is not applied either
        ({"preliminary": "ignore", "empty_list": "maybe"}, ["allowed: error|empty"]),
    ):
        r = sandbox_control.client.post("/sandbox/variants", json=body)
        assert r.status_code == 400
        assert all(w in r.json()["error"] for w in words), r.json()
    assert sandbox_control.client.post("/sandbox/variants", content=b"[1]").status_code == 400
    assert sandbox_control.variants()["preliminary"] == "validate"
    # reset wipes the data, not the variants; health shows them
    sandbox_control.reset(seed="demo")
    assert sandbox_control.variants()["duplicates"] == "accept"
    assert sandbox_control.health()["variants"]["ids"] == "lenient"
    assert "variants" in httpx.get(amsi_sandbox.base_url + "/").text


def test_sandbox_server_passes_variants_and_restart_keeps_them(tmp_path, start_sandbox):
    with pytest.raises(ValueError, match="allowed: refuse|accept"):
        SandboxServer(tmp_path / "x.sqlite3", variants={"duplicates": "maybe"})
    with pytest.raises(ValueError, match="unknown variant"):
        Sandbox(tmp_path / "y.sqlite3", variants={"speed": "fast"})
    server = start_sandbox("s", seed="demo", variants={"ids": "lenient"})
    control = server.control()
    assert control.variants()["ids"] == "lenient"
    control.set_variants(empty_list="empty")
    server.restart()
    assert control.variants() == {**defaults(), "ids": "lenient", "empty_list": "empty"}
    control.close()


# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"ClientJnlNo": "B-17"}, FORMAT),
        ({"ClientJnlNo": ""}, FORMAT),
        ({"ClientJnlNo": "50 01"}, FORMAT),
        ({"ClientJnlNo": "5001.0"}, FORMAT),
        ({"ClientJnlNo": "\u0665\u0660\u0660\u0661"}, FORMAT),  # Arabic-Indic digits
        ({"ClientJnlNo": "2147483648"}, OVERFLOW),
        ({"ClientJnlNo": "26011500100"}, OVERFLOW),
        ({"ClientTransactionID": "T1"}, FORMAT),
        ({"ClientTransactionID": ""}, FORMAT),
        ({"ClientTransactionID": "-2147483649"}, OVERFLOW),
        ({"ClientMerchantID": "M1001"}, FORMAT),
        ({"ClientMerchantID": "99999999999"}, OVERFLOW),
    ],
)
def test_int32_refuses_add_payment_ids_with_a_fault_and_writes_nothing(
    amsi_sandbox, sandbox_control, attrs, message
):
    before = balance(sandbox_control)
    r = pay(amsi_sandbox, **attrs)
    assert r.status_code == 500
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    assert r.content == fault_bytes(message)
    assert sandbox_control.ledger() == [] and balance(sandbox_control) == before


def test_int32_fault_speaks_soap12_and_refuses_the_whole_call(amsi_sandbox, sandbox_control):
    r = pay(amsi_sandbox, SOAP12, ClientJnlNo="x")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/soap+xml; charset=utf-8"
    assert r.content == fault_bytes(FORMAT, SOAP12)
    # a second payment with a bad id faults the call: the good first one is not booked either
    two = payment_xml(NORMAL).replace(
        "</Payments>", payment_xml(NORMAL, ClientTransactionID="9002", ClientJnlNo="1e3")[10:]
    )
    r = soap_post(amsi_sandbox, "ledger", "AddPayment", two)
    assert r.status_code == 500 and r.content == fault_bytes(FORMAT)
    assert sandbox_control.ledger() == []


def test_int32_refuses_return_and_settlement_ids_with_a_fault(amsi_sandbox, sandbox_control):
    assert code(item(pay(amsi_sandbox), "AddPayment")) == 0
    before = sandbox_control.ledger()
    for op, xml, message in (
        ("ReturnPayment", return_xml("T1", "NSF", "5001"), FORMAT),
        ("ReturnPayment", return_xml("9001", "NSF", "B5001"), FORMAT),
        ("ReturnPayment", return_xml("9001", "NSF", "9999999999"), OVERFLOW),
        ("ReturnPayment", return_xml("", "NSF", "5001"), FORMAT),
        ("UpdateSettlementData", settle_xml("B5001", "100.00"), FORMAT),
        ("UpdateSettlementData", settle_xml("", "100.00"), FORMAT),
        ("UpdateSettlementData", settle_xml("5001", "100.00", merchant="M1001"), FORMAT),
        ("UpdateSettlementData", settle_xml("2147483648", "100.00"), OVERFLOW),
    ):
        r = soap_post(amsi_sandbox, "ledger", op, xml)
        assert (r.status_code, r.content) == (500, fault_bytes(message)), (op, xml)
    assert sandbox_control.ledger() == before
    assert sandbox_control.lease(*NORMAL)["nsf_count"] == 0


def test_int32_reads_ids_as_numbers(amsi_sandbox, sandbox_control):
    """Int32.Parse takes white space, a sign and leading zeros: eSite keeps the number."""
    r = pay(amsi_sandbox, ClientJnlNo=" +0005001 ", ClientTransactionID="0009001",
            ClientMerchantID="01001")  # fmt: skip
    first = item(r, "AddPayment")
    assert code(first) == 0 and first.get("ClientJnlNo") == " +0005001 "  # echoed as sent
    (batch,) = sandbox_control.ledger()
    assert batch["client_jnl_no"] == "5001"
    assert batch["entries"][0]["client_transaction_id"] == "9001"
    dup = item(pay(amsi_sandbox, ClientTransactionID="9001"), "AddPayment")
    assert code(dup) == ErrorCode.DUPLICATE_TRANSACTION
    top = item(pay(amsi_sandbox, ClientTransactionID="2147483647", ClientJnlNo="2147483647"),
               "AddPayment")  # fmt: skip
    assert code(top) == 0
    settled = item(
        soap_post(amsi_sandbox, "ledger", "UpdateSettlementData", settle_xml("05001", "100")),
        "UpdateSettlementData",
    )
    assert code(settled) == 0


def test_lenient_ids_take_any_transaction_id_and_long_batch_numbers(amsi_sandbox, sandbox_control):
    sandbox_control.set_variants(ids="lenient")
    r = pay(amsi_sandbox, ClientTransactionID="T-1", ClientJnlNo="26011500100",
            ClientMerchantID="1001")  # fmt: skip
    assert code(item(r, "AddPayment")) == 0
    assert item(pay(amsi_sandbox, ClientJnlNo="B-17"), "AddPayment").findtext("ErrorCode") == "205"
    (batch,) = sandbox_control.ledger()
    assert batch["client_jnl_no"] == "26011500100"
    assert batch["entries"][0]["client_transaction_id"] == "T-1"


# -- duplicates ------------------------------------------------------------------------------


def test_duplicates_refuse(amsi_sandbox, sandbox_control):
    first = item(pay(amsi_sandbox), "AddPayment")
    dup = item(pay(amsi_sandbox, ClientJnlNo="6000"), "AddPayment")
    assert code(dup) == ErrorCode.DUPLICATE_TRANSACTION
    assert dup.findtext("EvolutionReference") == first.findtext("EvolutionReference")
    assert [len(b["entries"]) for b in sandbox_control.ledger()] == [1]


def test_duplicates_accept_books_twice_and_returns_one_at_a_time(edex, sandbox_control):
    sandbox_control.set_variants(duplicates="accept")
    before = sandbox_control.lease(*NORMAL)["attributes"]["EndBalance"]
    first = edex.pay(Amount="100.00")
    second = edex.pay(Amount="40.00", ClientJnlNo="6000")
    assert code(first) == code(second) == 0
    assert first.findtext("EvolutionReference") != second.findtext("EvolutionReference")
    assert [b["total"] for b in sandbox_control.ledger()] == ["100.00", "40.00"]
    after = sandbox_control.lease(*NORMAL)["attributes"]["EndBalance"]
    assert Decimal(before) - Decimal(after) == 140
    assert code(edex.ret("9001", "Reverse", description="refund")) == 0  # the first one
    assert [b["total"] for b in sandbox_control.ledger()] == ["0.00", "40.00"]
    assert code(edex.ret("9001", "Reverse", description="refund")) == 0  # then the second
    assert [b["total"] for b in sandbox_control.ledger()] == ["0.00", "0.00"]
    assert code(edex.ret("9001", "Reverse")) == ErrorCode.ALREADY_RETURNED


# -- preliminary -----------------------------------------------------------------------------


def test_preliminary_validate_writes_nothing(edex, sandbox_control):
    assert code(edex.pay(preliminary=1)) == 0
    assert sandbox_control.ledger() == []


def test_preliminary_ignore_writes(edex, sandbox_control):
    sandbox_control.set_variants(preliminary="ignore")
    assert code(edex.pay(preliminary=1)) == 0
    assert code(edex.ret("9001", "NSF", preliminary=1)) == 0
    (batch,) = sandbox_control.ledger()
    assert [e["amount"] for e in batch["entries"]] == ["100.00", "-100.00"]
    assert code(edex.settle("5001", "0.00", preliminary=1)) == 0
    assert sandbox_control.ledger()[0]["settled"] is True


# -- login_error -----------------------------------------------------------------------------

OPERATIONS = [
    ("leasing", "GetPropertyList", ""),
    ("leasing", "GetPropertyUnits", "<EDEX><propertyid>001</propertyid></EDEX>"),
    ("leasing", "GetPropertyResidents", "<EDEX><propertyid>001</propertyid></EDEX>"),
    ("leasing", "GetResidentsByStatusChangeOrTransactionDate", "<EDEX/>"),
    ("leasing", "GetGuestCardData", "<EDEX/>"),
    ("ledger", "AddPayment", payment_xml()),
    ("ledger", "ReturnPayment", return_xml("9001", "NSF", "5001")),
    ("ledger", "UpdateSettlementData", settle_xml("5001", "100.00")),
    ("ledger", "AddBilling", "<EDEX/>"),
]


@pytest.mark.parametrize(("service", "op", "xml"), OPERATIONS)
def test_login_error_document_for_every_operation(amsi_sandbox, service, op, xml):
    for creds in ({"Password": "wrong"}, {"UserID": "nobody"}):
        r = soap_post(amsi_sandbox, service, op, xml, **creds)
        name = "Leasing" if service == "leasing" else "Ledger"
        assert result_text(r, op) == LOGIN_DOC.format(service=name, op=op)


@pytest.mark.parametrize("version", [SOAP11, SOAP12])
def test_login_error_fault(amsi_sandbox, sandbox_control, version):
    sandbox_control.set_variants(login_error="fault")
    for service, op, xml in OPERATIONS:
        r = soap_post(amsi_sandbox, service, op, xml, version, Password="wrong")
        assert r.status_code == 500
        assert r.content == fault_bytes("Validation of user credentials failed.", version)
    assert sandbox_control.ledger() == []
    # only credentials fault: a wrong portfolio is still an error document
    r = soap_post(amsi_sandbox, "leasing", "GetPropertyList", "", PortfolioName="OTHER")
    assert "<ErrorCode>101</ErrorCode>" in result_text(r, "GetPropertyList")


def test_every_whole_call_error_names_service_and_method(amsi_sandbox):
    for service, op, xml, expected in (
        ("leasing", "GetPropertyResidents", "<EDEX><propertyid>999</propertyid></EDEX>", 102),
        ("ledger", "AddPayment", "<Payments><Payment", 104),
        ("ledger", "ReturnPayment", "<Payments/>", 104),
        ("ledger", "UpdatePayment", "<Payments/>", 105),
    ):
        text = result_text(soap_post(amsi_sandbox, service, op, xml), op)
        doc = etree.fromstring(text.encode())
        assert [c.tag for c in doc] == ["webservice", "webmethod", "Error"], text
        assert doc.findtext("webservice") == service.title()
        assert doc.findtext("webmethod") == op
        assert int(doc.findtext("Error/ErrorCode")) == expected
    r = soap_post(amsi_sandbox, "ledger", "AddPayment", payment_xml(), PortfolioName="OTHER")
    assert result_text(r, "AddPayment").startswith(
        "<InternetTrafficResponse><webservice>Ledger</webservice><webmethod>AddPayment"
        "</webmethod><Error><ErrorCode>101</ErrorCode>"
    )


# -- empty_list ------------------------------------------------------------------------------

EMPTY_READS = [
    (
        "GetPropertyResidents",
        "<EDEX><propertyid>001</propertyid><leasestatus>P</leasestatus></EDEX>",
        "<PropertyResidents/>",
    ),
    (
        "GetResidentsByStatusChangeOrTransactionDate",
        "<EDEX><propertyid>001</propertyid><statuschangedatefrom>01/01/2001"
        "</statuschangedatefrom><statuschangedateto>01/02/2001</statuschangedateto>"
        "<transactiondatefrom></transactiondatefrom><transactiondateto></transactiondateto></EDEX>",
        "<PropertyResidents/>",
    ),
    ("GetPropertyUnits", "<EDEX><propertyid>002</propertyid></EDEX>", "<PropertyUnits/>"),
]


@pytest.mark.parametrize(("op", "xml", "empty"), EMPTY_READS)
def test_empty_list_error(amsi_sandbox, sandbox_control, op, xml, empty):
    sandbox_control.put_property("002", "No units yet", "1002")
    text = result_text(soap_post(amsi_sandbox, "leasing", op, xml), op)
    assert text.startswith(
        f"<InternetTrafficResponse><webservice>Leasing</webservice><webmethod>{op}</webmethod>"
        "<Error><ErrorCode>103</ErrorCode><ErrorDescription>No data found"
    )


@pytest.mark.parametrize(("op", "xml", "empty"), EMPTY_READS)
def test_empty_list_empty(amsi_sandbox, sandbox_control, op, xml, empty):
    sandbox_control.set_variants(empty_list="empty")
    sandbox_control.put_property("002", "No units yet", "1002")
    assert result_text(soap_post(amsi_sandbox, "leasing", op, xml), op) == empty
    # an unknown property is still an error, not an empty list
    bad = xml.replace(">001<", ">999<").replace(">002<", ">999<")
    assert "<ErrorCode>102</ErrorCode>" in result_text(
        soap_post(amsi_sandbox, "leasing", op, bad), op
    )


def test_empty_list_covers_an_empty_property_list(empty_sandbox):
    control = empty_sandbox.control()
    text = property_list(empty_sandbox)
    assert "<ErrorCode>103</ErrorCode>" in text
    control.set_variants(empty_list="empty")
    text = property_list(empty_sandbox)
    assert text == "<Properties/>"
    control.close()


# -- property_list ---------------------------------------------------------------------------


def test_property_list_attributes(amsi_sandbox):
    text = property_list(amsi_sandbox)
    assert text == (
        '<Properties><Property PropertyId="001" PropertyName="Maple Court" '
        'ClientMerchantID="1001" /></Properties>'
    )


def test_property_list_elements(amsi_sandbox, sandbox_control):
    sandbox_control.set_variants(property_list="elements")
    sandbox_control.put_property("002", "Harbor & View", "1002")
    text = property_list(amsi_sandbox)
    assert text == (
        "<Properties><Property><PropertyId>001</PropertyId><PropertyName>Maple Court"
        "</PropertyName><ClientMerchantID>1001</ClientMerchantID></Property>"
        "<Property><PropertyId>002</PropertyId><PropertyName>Harbor &amp; View</PropertyName>"
        "<ClientMerchantID>1002</ClientMerchantID></Property></Properties>"
    )
