"""Injected transport faults: what zeep and httpx see, and what the books keep."""

from __future__ import annotations

import time

import pytest
import requests
import zeep
from zeep.transports import Transport

from integrations_amsi.sandbox.codes import ErrorCode

from .edex import code, payment_xml


def test_latency_times_out_a_short_client_but_the_write_lands(amsi_sandbox, sandbox_control, edex):
    sandbox_control.add_fault("latency", "AddPayment", seconds=1.0, count=1)
    quick = zeep.Client(
        amsi_sandbox.ledger_wsdl_url, transport=Transport(timeout=5, operation_timeout=0.3)
    )
    with pytest.raises(requests.exceptions.Timeout):
        quick.service.AddPayment(**amsi_sandbox.credentials, preliminary=0, XMLData=payment_xml())
    time.sleep(1.0)
    assert len(sandbox_control.ledger()) == 1  # the server finished the write after the timeout
    assert code(edex.pay()) == ErrorCode.DUPLICATE_TRANSACTION
    assert sandbox_control.faults() == []


def test_http500_writes_nothing(sandbox_control, edex):
    sandbox_control.add_fault("http500", "AddPayment")
    with pytest.raises(zeep.exceptions.TransportError) as err:
        edex.pay()
    assert err.value.status_code == 500
    assert sandbox_control.ledger() == []
    assert code(edex.pay()) == 0  # count=1 by default: the next call goes through


def test_reset_writes_nothing(sandbox_control, edex):
    sandbox_control.add_fault("reset", "*")
    with pytest.raises(requests.exceptions.ConnectionError):
        edex.pay()
    assert sandbox_control.ledger() == []


def test_malformed_reply(sandbox_control, edex):
    sandbox_control.add_fault("malformed", "GetPropertyList")
    with pytest.raises(zeep.exceptions.TransportError, match="invalid XML"):
        edex.read("GetPropertyList", "")
    assert edex.read("GetPropertyList", "")[0].get("PropertyId") == "001"


def test_lost_reply_commits_the_write(sandbox_control, edex):
    sandbox_control.add_fault("lost_reply", "AddPayment")
    with pytest.raises(requests.exceptions.ConnectionError):
        edex.pay(Amount="42.00")
    (batch,) = sandbox_control.ledger()
    assert batch["total"] == "42.00"
    retry = edex.pay(Amount="42.00")
    assert code(retry) == ErrorCode.DUPLICATE_TRANSACTION
    assert retry.findtext("EvolutionReference") == batch["entries"][0]["evolution_reference"]


def test_ratio_with_seed_is_deterministic_and_faults_listed(sandbox_control, edex):
    fault = sandbox_control.add_fault("http500", "GetPropertyList", ratio=0.5, seed=7)
    assert sandbox_control.faults()[0]["id"] == fault["id"]
    outcomes = []
    for _ in range(10):
        try:
            edex.read("GetPropertyList", "")
            outcomes.append(True)
        except zeep.exceptions.TransportError:
            outcomes.append(False)
    assert True in outcomes and False in outcomes
    sandbox_control.clear_faults()
    assert sandbox_control.faults() == []


def test_bad_fault_spec_is_refused(sandbox_control):
    r = sandbox_control.client.post("/sandbox/faults", json={"mode": "explode"})
    assert r.status_code == 400 and "mode must be one of" in r.json()["error"]
