"""Onboarding checks: what ``amsi_connect`` and the connection form ask eSite before saving.

What eSite can tell with read-only calls (docs/amsi-evidence.md), checked in this order:

1. the eDex services answer: the Leasing WSDL over HTTP; a failure is an HTTP status or the
   network reason in words ("connection refused", "name not resolved"), never an exception's
   class name;
2. the login, the portfolio and the property: the connection test (``EdexClient.test``:
   GetPropertyList, and GetPropertyUnits when the list is empty);
3. the ClientMerchantID, only where eSite shows one: the sandbox's GetPropertyList carries the
   property's ClientMerchantID, but no evidence shows that a real eSite's does (production
   clients only ever sent it). So a merchant id that differs from a listed one is refused, and
   when none is listed the check passes *with a caveat* saying the merchant id was not checked
   (the form refuses anything but a whole number before it gets here) and that the first payment
   is where it is proven (docs/amsi.md, "First payment on a live eSite").

Also here: the rule that one AMSI property (portfolio + PropertyId) has one connection, unless
a person says why (``same_amsi_property``): a second connection would import the same AMSI
leases again as other leases of another platform property.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from django.utils import timezone

from integrations import outbox
from integrations.exceptions import ConnectionTestFailed, IntegrationError
from integrations.logging import mask, register_secret
from integrations.models import Connection

from . import PROVIDER_ID
from .client import EdexClient
from .conf import AmsiSettings
from .errors import TEST_LOGIN_REFUSED
from .probe import WSDL_TIMEOUT, network_reason
from .properties import parse_property_list

# How the connection test ends a refused login (EdexClient.test): about a saved connection.
POSTINGS_WAIT = "; postings for this connection wait until a test passes"
FIRST_PAYMENT = 'docs/amsi.md, "First payment on a live eSite"'


@dataclass(frozen=True)
class OnboardingCheck:
    ok: bool
    # One sentence: what was confirmed, or what is wrong and what to change.
    message: str
    # The connection form's field a failure is about ("" when none is).
    field: str = ""
    # What passed unchecked, to say beside "OK" (the ClientMerchantID when eSite lists none).
    caveat: str = ""
    login_refused: bool = False

    @property
    def summary(self) -> str:
        return f"{self.message}; {self.caveat}" if self.caveat else self.message


def points_at(settings: dict | None, portfolio: str, property_id: str) -> bool:
    """Whether connection settings name this AMSI property: the portfolio name compared
    without case or surrounding blanks, the PropertyId exactly ("001" is not "1")."""
    s = settings or {}
    return (
        str(s.get("property_id", "")) == str(property_id)
        and str(s.get("portfolio", "")).strip().lower() == (portfolio or "").strip().lower()
    )


def same_amsi_property(
    portfolio: str, property_id: str, *, connection: Connection | None = None
) -> list[Connection]:
    """The other AMSI connections to this AMSI property, when saving ``connection`` (None: a
    new one) with it would make a second one. A connection that already pointed there is left
    alone: the second connection was refused, or given its reason, when it was made."""
    if (
        connection is not None
        and connection.pk
        and points_at(connection.settings, portfolio, property_id)
    ):
        return []
    candidates = Connection.objects.filter(provider=PROVIDER_ID).select_related("property")
    if connection is not None and connection.pk:
        candidates = candidates.exclude(pk=connection.pk)
    return [c for c in candidates if points_at(c.settings, portfolio, property_id)]


def duplicate_message(others: list[Connection], portfolio: str, property_id: str) -> str:
    names = ", ".join(str(c.property) for c in others)
    return (
        f"AMSI property {property_id} of portfolio {portfolio} is already connected to {names}: "
        "a second connection would import its leases again, as leases of another property, and "
        "post their payments twice over. Use that connection; if two are really wanted, say why"
    )


def check_settings(settings: AmsiSettings) -> OnboardingCheck:
    """Ask eSite, read-only, whether these settings are right (the module docstring's steps)."""
    register_secret(settings.password)
    unreachable = _unreachable(settings)
    if unreachable:
        return OnboardingCheck(False, unreachable, field="url")
    client = EdexClient(settings)
    try:
        confirmed = client.test()
    except ConnectionTestFailed as err:
        return _test_failure(err)
    except IntegrationError as err:
        return OnboardingCheck(False, mask(err.message or str(err)))
    return check_merchant(client, settings, confirmed)


def unsaved(message: str) -> str:
    """A failure said where nothing was saved (the connection form): the connection test's
    note that the connection's postings wait is true of a saved connection only."""
    return message.removesuffix(POSTINGS_WAIT)


def record(connection: Connection, check: OnboardingCheck) -> None:
    """Keep the result as the connection's last test (as ``services.test_connection`` does):
    a pass resumes a connection paused for refused credentials, a refused login pauses it."""
    connection.last_tested_at = timezone.now()
    connection.last_test_ok = check.ok
    connection.last_test_message = mask(check.summary)
    if connection.pk:
        connection.save(update_fields=["last_tested_at", "last_test_ok", "last_test_message"])
        if check.ok:
            outbox.resume_connection(connection)
        elif check.login_refused:
            outbox.pause_connection(connection, check.message)


# -- steps -------------------------------------------------------------------------------------
def _unreachable(settings: AmsiSettings) -> str:
    """ "" when the Leasing WSDL answers HTTP 200, else why not, in words."""
    url = settings.leasing_wsdl
    timeout = min(settings.timeout, WSDL_TIMEOUT)
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as err:
        reason = network_reason(err, timeout)
        return (
            f"unreachable: {settings.base_url}: {reason}. Check the eDex base URL and that this "
            "server may connect to it (firewall, VPN, allow-listed address)"
        )
    if response.status_code != 200:
        status = f"HTTP {response.status_code} {response.reason_phrase or ''}".rstrip()
        return (
            f"unreachable: {url} answered {status}. The URL must be the eDex base, the folder "
            "holding leasing.asmx and ledger.asmx (…/edexweb/esite)"
        )
    return ""


def _test_failure(err: ConnectionTestFailed) -> OnboardingCheck:
    text = mask(err.message)
    if err.code == TEST_LOGIN_REFUSED:
        field = "portfolio" if text.startswith("unknown portfolio") else "password"
        return OnboardingCheck(False, text, field=field, login_refused=True)
    if "unknown property" in text:
        return OnboardingCheck(False, text, field="property_id")
    if text.startswith("unreachable"):
        return OnboardingCheck(False, text, field="url")
    return OnboardingCheck(False, text)


def check_merchant(client: EdexClient, settings: AmsiSettings, confirmed: str) -> OnboardingCheck:
    """The ClientMerchantID against what eSite lists (the module docstring's step 3); also
    what the admin's "Test connection" asks after the login test (AmsiProvider)."""
    mine = settings.merchant_id.strip()
    not_checked = (
        f"ClientMerchantID {mine} NOT checked: eSite's GetPropertyList does not show property "
        f"{settings.property_id}'s merchant id, and no other read-only call is known to; what "
        f"eSite does with a wrong one is not known either, so confirm it on the first payment "
        f"({FIRST_PAYMENT})"
    )
    try:
        listed = parse_property_list(client.leasing_document("GetPropertyList", ""))
    except IntegrationError:
        listed = []  # the test above already asked for the property directly
    ours = next((p for p in listed if p.property_id == settings.property_id), None)
    theirs = ours.merchant_id.strip() if ours else ""
    if not theirs:
        return OnboardingCheck(True, confirmed, caveat=not_checked)
    if theirs == mine or (theirs.isdigit() and mine.isdigit() and int(theirs) == int(mine)):
        return OnboardingCheck(
            True,
            f"{confirmed}; ClientMerchantID {mine} matches what eSite's GetPropertyList shows",
        )
    return OnboardingCheck(
        False,
        f"wrong ClientMerchantID: eSite's GetPropertyList shows {theirs} for property "
        f"{settings.property_id}, the connection has {mine}. Set it to {theirs}, or have the "
        "property's eSite setup corrected",
        field="merchant_id",
    )
