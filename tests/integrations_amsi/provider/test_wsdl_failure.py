"""A WSDL that cannot be read is reported in words: the network reason or the HTTP status,
never an exception class name (the admin's "Test connection" and the attempt log show it)."""

from __future__ import annotations

import pytest

from integrations.exceptions import IntegrationError
from integrations_amsi.client import EdexClient
from tests.integrations_amsi.world import sandbox_settings


def test_an_unreachable_wsdl_names_the_network_reason(closed_port):
    client = EdexClient(sandbox_settings(f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(IntegrationError) as caught:
        client.test()
    assert "connection refused" in caught.value.message
    assert "ConnectionError" not in caught.value.message


def test_a_wsdl_answered_with_an_http_error_names_the_status(amsi_sandbox):
    client = EdexClient(sandbox_settings(f"{amsi_sandbox.base_url}/no/such/path"))
    with pytest.raises(IntegrationError) as caught:
        client.test()
    assert "HTTP 404" in caught.value.message
