"""Leasing reads: shapes, round-trips of the captured samples, refusals, the delta query."""

from __future__ import annotations

import httpx
import pytest
from lxml import etree

from integrations_amsi.sandbox.codes import ErrorCode

from .edex import NORMAL, leasing_error

RESIDENTS_ALL = (
    "<EDEX><propertyid>{pid}</propertyid><leasestatus>{status}</leasestatus>"
    "<includeprimaryaddress>1</includeprimaryaddress><includecontactdetails>1"
    "</includecontactdetails><includerecurringcharges>1</includerecurringcharges></EDEX>"
)


def assert_same(a: etree._Element, b: etree._Element, path: str = "") -> None:
    """Element by element: tag, attributes (in order), text, children."""
    here = f"{path}/{a.tag}"
    assert a.tag == b.tag, here
    assert list(a.attrib.items()) == list(b.attrib.items()), here
    assert (a.text or "").strip() == (b.text or "").strip(), here
    assert len(a) == len(b), here
    for x, y in zip(a, b, strict=True):
        assert_same(x, y, here)


@pytest.mark.reference
def test_captured_samples_round_trip(amsi_reference, amsi_sandbox, sandbox_control, edex):
    units = (amsi_reference / "GetPropertyUnits.sample.xml").read_bytes()
    residents = (amsi_reference / "GetPropertyResidents.sample.xml").read_bytes()
    sandbox_control.put_property("001", "Sample", "1001")
    assert sandbox_control.load_units("001", units)["units"] == 67
    assert sandbox_control.load_residents("001", residents)["leases"] == 53
    got_units = edex.read(
        "GetPropertyUnits",
        "<EDEX><propertyid>001</propertyid><includeallstatuses>1</includeallstatuses></EDEX>",
    )
    assert_same(got_units, etree.fromstring(units))
    got = edex.read("GetPropertyResidents", RESIDENTS_ALL.format(pid="001", status=""))
    assert_same(got, etree.fromstring(residents))
    current = edex.read("GetPropertyResidents", RESIDENTS_ALL.format(pid="001", status="C"))
    assert len(current) == 53


def test_flags_drop_address_contact_and_recurring(edex):
    bare = edex.read("GetPropertyResidents", "<EDEX><propertyid>001</propertyid></EDEX>")
    assert bare.find("Lease/Address") is None and bare.find("Lease/RecurringCharge") is None
    assert bare.find("Lease/Occupant") is not None
    no_contact = edex.read(
        "GetPropertyResidents",
        "<edex><propertyid>001</propertyid><includeprimaryaddress>1</includeprimaryaddress></edex>",
    )
    assert no_contact.find("Lease/Address") is not None
    assert no_contact.find("Lease/Address/Contact") is None


def test_leasestatus_filter_and_doubled_root(edex):
    notice = edex.read(
        "GetPropertyResidents",
        "<EDEX><EDEX><propertyid>001</propertyid><leasestatus>N</leasestatus></EDEX></EDEX>",
    )
    assert [le.get("occustatuscode") for le in notice] == ["N"]
    everyone = edex.read("GetPropertyResidents", RESIDENTS_ALL.format(pid="001", status="C"))
    assert len(everyone) == 23
    keys = {(le.get("BldgID"), le.get("UnitID"), le.get("ResiID")) for le in everyone}
    assert ("01", "101", "1") in keys and ("02", "101", "1") in keys


def test_units_and_property_list(edex):
    units = edex.read("GetPropertyUnits", "<EDEX><propertyid>001</propertyid></EDEX>")
    assert units.tag == "PropertyUnits" and len(units) >= 24
    assert set(units[0].attrib) >= {"PropertyId", "BldgId", "UnitId", "OccuStatusCode"}
    props = edex.read("GetPropertyList", "")
    assert props[0].get("PropertyId") == "001"


@pytest.mark.parametrize(
    ("creds", "xml", "expected"),
    [
        ({"Password": "wrong"}, "<EDEX><propertyid>001</propertyid></EDEX>", 1),
        ({"UserID": "someone"}, "<EDEX><propertyid>001</propertyid></EDEX>", 1),
        ({"PortfolioName": "OTHER"}, "<EDEX><propertyid>001</propertyid></EDEX>", 101),
        ({}, "<EDEX><propertyid>999</propertyid></EDEX>", 102),
        ({}, "<EDEX><propertyid>001</propertyid><leasestatus>P</leasestatus></EDEX>", 103),
        ({}, "<EDEX><propertyid>001</propertyid", 104),
    ],
)
def test_leasing_refusals(edex, creds, xml, expected):
    doc = edex.read("GetPropertyResidents", xml, **creds)
    assert leasing_error(doc) == expected
    assert doc.findtext("Error/ErrorDescription").startswith(ErrorCode(expected).description)


def test_unsupported_operation(edex):
    doc = edex.read("GetGuestCardData", "<EDEX/>")
    assert leasing_error(doc) == ErrorCode.NOT_SUPPORTED
    assert "not supported by the sandbox" in doc.findtext("Error/ErrorDescription")


def test_cdata_and_escaped_xmldata_over_raw_http(amsi_sandbox):
    c = amsi_sandbox.credentials
    for xmldata in (
        "<![CDATA[<EDEX><propertyid>001</propertyid></EDEX>]]>",
        "&lt;EDEX&gt;&lt;propertyid&gt;001&lt;/propertyid&gt;&lt;/EDEX&gt;",
    ):
        env = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope"><soap12:Body>'
            '<GetPropertyUnits xmlns="http://tempuri.org/">'
            f"<UserID>{c['UserID']}</UserID><Password>{c['Password']}</Password>"
            f"<PortfolioName>{c['PortfolioName']}</PortfolioName><XMLData>{xmldata}</XMLData>"
            "</GetPropertyUnits></soap12:Body></soap12:Envelope>"
        )
        r = httpx.post(
            amsi_sandbox.leasing_url,
            content=env,
            headers={
                "Content-Type": "application/soap+xml; charset=utf-8; "
                'action="http://tempuri.org/GetPropertyUnits"'
            },
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/soap+xml")
        result = etree.fromstring(r.content).findtext(
            ".//{http://tempuri.org/}GetPropertyUnitsResult"
        )
        assert etree.fromstring(result.encode()).tag == "PropertyUnits"


def test_delta_query_sees_status_change_and_ledger(edex, sandbox_control):
    day = __import__("datetime").date.today().strftime("%m/%d/%Y")
    query = (
        "<EDEX><propertyid>001</propertyid><statuschangedatefrom>{s}</statuschangedatefrom>"
        "<statuschangedateto>{s}</statuschangedateto><transactiondatefrom>{t}"
        "</transactiondatefrom><transactiondateto>{t}</transactiondateto></EDEX>"
    )
    # everything was loaded today: all leases count as changed today
    assert (
        len(edex.read("GetResidentsByStatusChangeOrTransactionDate", query.format(s=day, t="")))
        == 24
    )
    assert (
        leasing_error(
            edex.read(
                "GetResidentsByStatusChangeOrTransactionDate", query.format(s="01/01/2001", t="")
            )
        )
        == ErrorCode.NO_DATA
    )
    sandbox_control.patch_lease("001", "01", "102", "2", BlockPaymentAccess="Y")
    lease = sandbox_control.lease("001", "01", "102", "2")
    assert lease["attributes"]["BlockPaymentAccess"] == "Y"
    assert lease["status_changes"][-1]["what"] == "BlockPaymentAccess"
    assert edex.pay(NORMAL).findtext("ErrorCode") == "0"
    by_txn = edex.read("GetResidentsByStatusChangeOrTransactionDate", query.format(s="", t=day))
    assert [(le.get("BldgID"), le.get("UnitID")) for le in by_txn] == [("01", "101")]
    assert by_txn[0].get("EndBalance")


def test_patch_credit_status_updates_description(sandbox_control, edex):
    sandbox_control.patch_lease("001", "01", "102", "2", CreditStatus="C")
    docs = edex.read("GetPropertyResidents", "<EDEX><propertyid>001</propertyid></EDEX>")
    lease = next(le for le in docs if le.get("UnitID") == "102" and le.get("BldgID") == "01")
    assert (lease.get("CreditStatus"), lease.get("CreditStatusDescription")) == ("C", "No Checks")


def test_add_lease_through_control(sandbox_control, edex):
    xml = (
        b'<Lease PropertyId="001" BldgID="02" UnitID="301" ResiID="77" Name="New Tenant" '
        b'occustatuscode="C" CreditStatus="N" BlockPaymentAccess="N"><Occupant PropertyId="001" '
        b'BldgID="02" UnitID="301" ResiID="77" OccuSeqNo="1" ResponsibleFlag="Responsible" />'
        b"</Lease>"
    )
    assert sandbox_control.add_lease("001", xml) == {"added": ["001-02-301-77"]}
    assert edex.pay(("001", "02", "301", "77")).findtext("ErrorCode") == "0"
