"""The error table's words when eSite sends a code without an ErrorDescription: only code 1's
text is a real eSite's; every other row is the sandbox's, and a message says so."""

from __future__ import annotations

import pytest

from integrations.exceptions import LoginRefused, PermanentError, UnknownRemoteError
from integrations_amsi import errors


def _error(code: str, description: str = ""):
    return errors.error_for(code, description, operation="AddPayment", record="p1")


def test_a_sandbox_code_without_text_is_not_passed_off_as_esites_meaning():
    err = _error("202")
    assert isinstance(err, PermanentError) and err.code == "202"
    assert err.message == (
        "AMSI refused: no text (in the sandbox, code 202 means: lease credit status is Hold or "
        "Restricted in AMSI)"
    )


def test_code_1_without_text_says_what_production_clients_met():
    err = _error("1")
    assert isinstance(err, LoginRefused)
    assert err.message == "AMSI refused the login: Validation of user credentials failed."


@pytest.mark.parametrize("code", ["1", "202", "999"])
def test_esites_own_text_comes_first(code):
    assert _error(code, "Lease is on hold.").message.endswith(": Lease is on hold.")


def test_an_unknown_code_without_text_says_there_was_none():
    err = _error("999")
    assert isinstance(err, UnknownRemoteError)
    assert err.message == "AMSI answered an error code this integration does not know: no text"


@pytest.mark.parametrize(
    "description, expected",
    [
        # eSite's own words name the portfolio: read as an unknown portfolio.
        ("Portfolio NOPE was not found.", "unknown portfolio 'DEMO' (credentials refused"),
        # Only the code says so, and 101 is the sandbox's code: said as a question.
        ("", "unknown portfolio 'DEMO'? (error code 101 is the sandbox's code for it; what a "
         "real eSite means by it is not known: check the UserID and Password too)"),
        ("Access denied.", "unknown portfolio 'DEMO'? (error code 101 is the sandbox's code"),
    ],
)  # fmt: skip
def test_the_connection_test_reads_code_101_by_esites_words(
    amsi_sandbox, monkeypatch, description, expected
):
    """The sandbox always sends its portfolio text with 101, so the reply is replaced here
    (a stand-in for a real eSite's other answers): the connection test's words."""
    from integrations.exceptions import ConnectionTestFailed
    from integrations_amsi.client import EdexClient
    from tests.integrations_amsi.world import sandbox_settings

    client = EdexClient(sandbox_settings(amsi_sandbox.base_url))

    def refused(operation, xml):
        raise errors.error_for("101", description, operation=operation, record="")

    monkeypatch.setattr(client, "leasing_document", refused)
    with pytest.raises(ConnectionTestFailed) as caught:
        client.test()
    assert caught.value.message.startswith(expected)
