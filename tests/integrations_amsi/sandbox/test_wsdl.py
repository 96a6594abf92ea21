"""The sandbox's WSDLs: zeep loads them, and they match the captured eSite services."""

from __future__ import annotations

import httpx
import pytest
import zeep
from lxml import etree
from zeep.transports import Transport

from integrations_amsi.sandbox.wsdl import build_wsdl, signature

from .edex import settle_xml


def test_zeep_loads_both_wsdls_from_the_running_sandbox(
    amsi_sandbox, leasing_client, ledger_client
):
    assert "GetPropertyResidents" in dir(leasing_client.service)
    assert "AddPayment" in dir(ledger_client.service)
    body = httpx.get(amsi_sandbox.ledger_wsdl_url).text
    assert f'location="{amsi_sandbox.ledger_url}"' in body
    assert 'soapAction="http://tempuri.org/AddPayment"' in body


def test_wsdl_query_is_case_insensitive(amsi_sandbox):
    r = httpx.get(amsi_sandbox.base_url + "/EDEXWEB/esite/Leasing.asmx?WSDL")
    assert r.status_code == 200 and b"GetPropertyUnits" in r.content


@pytest.mark.reference
@pytest.mark.parametrize("service", ["leasing", "ledger"])
def test_operations_and_parameters_conform_to_captured_wsdl(amsi_reference, service):
    captured = signature(etree.parse(str(amsi_reference / f"{service}.wsdl")).getroot())
    ours = signature(etree.fromstring(build_wsdl(service, "http://x/")))
    assert list(ours) == list(captured)
    assert ours == captured


@pytest.mark.reference
def test_captured_wsdls_drive_the_sandbox(amsi_sandbox, amsi_reference):
    for service, binding in (("leasing", "LeasingSoap"), ("ledger", "LedgerSoap12")):
        client = zeep.Client(
            str(amsi_reference / f"{service}.wsdl"),
            transport=Transport(timeout=5, operation_timeout=5),
        )
        url = amsi_sandbox.leasing_url if service == "leasing" else amsi_sandbox.ledger_url
        proxy = client.create_service(f"{{http://tempuri.org/}}{binding}", url)
        if service == "leasing":
            result = proxy.GetPropertyList(**amsi_sandbox.credentials, XMLData="<EDEX/>")
            assert 'PropertyId="001"' in result
        else:  # SOAP 1.2 binding
            result = proxy.UpdateSettlementData(
                **amsi_sandbox.credentials, preliminary=0, XMLData=settle_xml("9999", "1.00")
            )
            assert "<ErrorCode>401</ErrorCode>" in result


def test_soap12_binding_of_our_wsdl(amsi_sandbox, leasing_client):
    proxy = leasing_client.bind("Leasing", "LeasingSoap12")
    assert "Maple Court" in proxy.GetPropertyList(**amsi_sandbox.credentials, XMLData="")


def test_unknown_soap_action_is_a_500_fault(amsi_sandbox):
    env = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        '<GetPropertyList xmlns="http://tempuri.org/"/></soap:Body></soap:Envelope>'
    )
    r = httpx.post(
        amsi_sandbox.leasing_url,
        content=env,
        headers={"Content-Type": "text/xml", "SOAPAction": '"http://tempuri.org/Nope"'},
    )
    assert r.status_code == 500
    assert b"did not recognize the value of HTTP Header SOAPAction" in r.content
