"""The probe's run: steps 1 to 4 (WSDL, login, property, ClientMerchantID) and the evidence;
steps 5 and 6 are in ``_lists``."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from integrations.exceptions import IntegrationError, RetryableError
from integrations.logging import mask, register_secret

from ..client import get_client
from ..conf import AmsiSettings
from ..errors import portfolio_refusal
from ..identifiers import is_edex_int
from ..properties import PropertyInfo, parse_property_list
from ..xmldocs import UnsafeXml, local, parse_document
from ._lists import (
    AS_EMPTY_OTHER,
    _error_text,
    _is_login_refusal,
    _list_error,
    _ListSteps,
    _plural,
    _property_list_shape,
)
from .report import (
    _TITLES,
    CONFIRMED,
    DELTA_DAYS,
    EVIDENCE_ROWS,
    FAIL,
    LEASING_READS,
    NOT_SEEN,
    OK,
    SKIP,
    WARN,
    WSDL_TIMEOUT,
    Evidence,
    ProbeReport,
    Step,
    network_reason,
)


class _Probe(_ListSteps):
    def __init__(
        self,
        settings: AmsiSettings,
        *,
        client: Any = None,
        today: dt.date | None = None,
        days: int = DELTA_DAYS,
        wsdl_timeout: float = WSDL_TIMEOUT,
        progress: Callable[[Step], None] | None = None,
    ) -> None:
        register_secret(settings.password)
        self.settings = settings
        self._client = client
        self.today = today or dt.date.today()
        self.days = days
        self.wsdl_timeout = wsdl_timeout
        self.progress = progress
        self.report = ProbeReport(
            target={
                "url": settings.base_url,
                "portfolio": settings.portfolio,
                "user": settings.user_id,
                "property_id": settings.property_id,
                "merchant_id": settings.merchant_id,
            }
        )
        self.seen: dict[str, tuple[str, str]] = {}
        self.properties: list[PropertyInfo] = []
        self.ours: PropertyInfo | None = None
        self.status_codes: dict[str, Counter] = {}
        self.last_list = ""  # what the last list read answered, in words
        self.last_error_document = ""  # "code X, text Y" when it answered an error document

    @property
    def client(self):
        if self._client is None:
            self._client = get_client(self.settings, key="probe")
        return self._client

    def add(self, number: int, name: str, title: str, status: str, detail: str, fix: str = ""):
        step = Step(number, name, title, status, mask(detail), mask(fix))
        step.seconds = time.monotonic() - self._started
        self.report.steps.append(step)
        if self.progress:
            self.progress(step)
        return step

    def see(self, row: str, seen: str, status: str = CONFIRMED) -> None:
        self.seen[row] = (status, seen)

    def run(self) -> ProbeReport:
        steps = (
            self.step_wsdl,
            self.step_login,
            self.step_property,
            self.step_merchant,
            self.step_counts,
            self.step_delta,
        )
        stop = ""
        for number, step in enumerate(steps, start=1):
            self._started = time.monotonic()
            if stop:
                self.add(number, step.__name__[5:], _TITLES[number], SKIP, f"not run: {stop}")
                continue
            stop = step(number) or ""
        self._evidence()
        return self.report

    # 1 ---------------------------------------------------------------------------------------
    def step_wsdl(self, n: int) -> str:
        url = self.settings.leasing_wsdl
        title = _TITLES[n]
        try:
            resp = httpx.get(url, timeout=self.wsdl_timeout, follow_redirects=True)
        except httpx.HTTPError as err:
            reason = network_reason(err, self.wsdl_timeout)
            self.add(
                n,
                "wsdl",
                title,
                FAIL,
                f"{url}: {reason}",
                f"AMSI is not reachable at {self.settings.base_url} ({reason}): check the eDex "
                "base URL and that this server may connect to it (firewall, VPN, allow-listed "
                "address).",
            )
            return "AMSI is not reachable"
        if resp.status_code != 200:
            phrase = resp.reason_phrase or ""
            self.add(
                n,
                "wsdl",
                title,
                FAIL,
                f"{url}: HTTP {resp.status_code} {phrase}".rstrip(),
                f"{url} answered HTTP {resp.status_code}: check the eDex base URL: the folder "
                "holding leasing.asmx and ledger.asmx (seen as …/edexweb/esite).",
            )
            return "the Leasing WSDL could not be read"
        try:
            root = parse_document(resp.content, what="the Leasing WSDL")
        except UnsafeXml as err:
            root, problem = None, str(err)
        else:
            problem = "" if local(root.tag) == "definitions" else f"<{local(root.tag)}>, not a WSDL"
        if problem:
            self.add(
                n,
                "wsdl",
                title,
                FAIL,
                f"{url}: HTTP 200, but {problem}",
                f"{url} does not serve the eDex Leasing WSDL: set the URL to the eDex base "
                "(…/edexweb/esite).",
            )
            return "the Leasing WSDL could not be read"
        operations = {
            el.get("name")
            for el in root.iter()
            if local(el.tag) == "operation" and local(el.getparent().tag) == "portType"
        }
        missing = [op for op in LEASING_READS if op not in operations]
        detail = f"{url}: HTTP 200, a WSDL with {_plural(len(operations), 'operation')}"
        status = OK
        if resp.history:
            final = str(resp.url)
            detail += f"; redirected to {final}"
            status = WARN
        if missing:
            detail += f"; missing {', '.join(missing)}"
            status = WARN
        self.add(n, "wsdl", title, status, detail)
        return ""

    # 2 ---------------------------------------------------------------------------------------
    def step_login(self, n: int) -> str:
        title = _TITLES[n]
        who = f"user {self.settings.user_id}, portfolio {self.settings.portfolio}"
        try:
            root = self.client.leasing_document("GetPropertyList", "")
        except IntegrationError as err:
            return self._login_failure(n, title, who, err)
        self.properties = parse_property_list(root)
        shape = _property_list_shape(root)
        if shape:
            self.see(
                "GetPropertyList shape",
                f"{shape} (<{local(root.tag)}><Property PropertyId…>)",
            )
        else:
            self.see(
                "GetPropertyList shape",
                f"<{local(root.tag)}> with no <Property> carrying a PropertyId",
                NOT_SEEN,
            )
        self.see("login error reply", "the login succeeded: no refusal seen", NOT_SEEN)
        self.add(
            n,
            "login",
            title,
            OK,
            f"GetPropertyList answered for {who}: "
            f"{_plural(len(self.properties), 'property', 'properties')} listed",
        )
        return ""

    def _login_failure(self, n: int, title: str, who: str, err: IntegrationError) -> str:
        text = _error_text(err)
        if _is_login_refusal(err):
            reply = f"error code {err.code}: {text}" if err.code else text
            self.see("login error reply", reply)
            portfolio = portfolio_refusal(err)  # by eSite's words, or by the sandbox's code
            if portfolio == "code":
                self.add(
                    n,
                    "login",
                    title,
                    FAIL,
                    f"AMSI refused the login with error code {err.code}, the sandbox's code for "
                    f"an unknown portfolio; what a real eSite means by it is not known ({reply})",
                    f"Check the PortfolioName ({self.settings.portfolio!r}) against the one AMSI "
                    "gave for this eSite, then the eDex UserID and password.",
                )
                return "the portfolio is unknown"
            if portfolio == "said":
                self.add(
                    n,
                    "login",
                    title,
                    FAIL,
                    f"AMSI does not know the portfolio {self.settings.portfolio!r} ({reply})",
                    f"Set the PortfolioName to the one AMSI gave for this eSite (not "
                    f"{self.settings.portfolio!r}).",
                )
                return "the portfolio is unknown"
            self.add(
                n,
                "login",
                title,
                FAIL,
                f"AMSI refused the user id or password ({who}; {reply})",
                f"Fix the eDex UserID ({self.settings.user_id}) or the password (AMSI_PASSWORD, "
                "or the connection's Password): AMSI refused them (if both are right, check the "
                "PortfolioName too: eSite may refuse an unknown one the same way).",
            )
            return "the login was refused"
        if isinstance(err, RetryableError) or not err.code:
            words = err.message or "no usable reply"
            self.add(
                n,
                "login",
                title,
                FAIL,
                f"GetPropertyList failed: {words}",
                f"GetPropertyList failed ({words}): check that the URL is the eSite's eDex "
                "base and try again; if it persists, ask AMSI whether the eDex services are up.",
            )
            return "GetPropertyList failed"
        # An error document other than a login refusal: the login itself was accepted.
        self.see("login error reply", "the login succeeded: no refusal seen", NOT_SEEN)
        self.see(
            "GetPropertyList shape",
            f"not seen: GetPropertyList answered error code {err.code}: {text}",
            NOT_SEEN,
        )
        # (not the row "empty lists": that is about resident lists, RESIDENT_LISTS)
        self.add(n, "login", title, WARN, f"GetPropertyList: {_list_error(err, AS_EMPTY_OTHER)}")
        return ""

    # 3 ---------------------------------------------------------------------------------------
    def step_property(self, n: int) -> str:
        title = _TITLES[n]
        pid = self.settings.property_id
        ids = [p.property_id for p in self.properties]
        if not ids:
            self.add(
                n,
                "property",
                title,
                WARN,
                f"GetPropertyList listed no property: cannot confirm {pid!r} from the list; the "
                "counts below ask for it directly",
            )
            return ""
        self.ours = next((p for p in self.properties if p.property_id == pid), None)
        if self.ours is None:
            shown = ", ".join(ids[:30]) + (f", … ({len(ids)} in all)" if len(ids) > 30 else "")
            near = [i for i in ids if i.lstrip("0") == pid.lstrip("0")]
            hint = f"; did you mean {near[0]!r}? leading zeros matter" if near else ""
            self.add(
                n,
                "property",
                title,
                FAIL,
                f"property {pid!r} is not in portfolio {self.settings.portfolio}'s "
                f"GetPropertyList (it has: {shown}){hint}",
                f"Set the AMSI PropertyId to one of the ids GetPropertyList lists ({shown}), "
                "exactly as written (leading zeros matter).",
            )
            return f"property {pid!r} is not in GetPropertyList"
        name = f" {self.ours.name!r}" if self.ours.name else ""
        self.add(
            n,
            "property",
            title,
            OK,
            f"{pid}{name} is in GetPropertyList ({_plural(len(ids), 'id')} listed)",
        )
        return ""

    # 4 ---------------------------------------------------------------------------------------
    def step_merchant(self, n: int) -> str:
        title = _TITLES[n]
        mine = self.settings.merchant_id.strip()
        theirs = self.ours.merchant_id if self.ours else ""
        integer = is_edex_int(mine)
        if theirs:
            kind = "an integer" if is_edex_int(theirs) else "not an integer"
            self.see("ClientMerchantID type", f"GetPropertyList carries {theirs!r} ({kind})")
        else:
            self.see(
                "ClientMerchantID type",
                "GetPropertyList carries no ClientMerchantID for the property",
                NOT_SEEN,
            )
        if not mine:
            self.add(
                n,
                "merchant",
                title,
                FAIL,
                "the connection has no ClientMerchantID"
                + (f" (GetPropertyList says {theirs})" if theirs else ""),
                "Set the ClientMerchantID agreed with the property (every payment carries it).",
            )
            return ""
        type_note = (
            "an integer, as production clients sent"
            if integer
            else "not a positive integer of at most 9 digits: production clients sent an integer"
        )
        if theirs and theirs != mine:
            if theirs.isdigit() and mine.isdigit() and int(theirs) == int(mine):
                self.add(
                    n,
                    "merchant",
                    title,
                    WARN,
                    f"GetPropertyList says {theirs}, the connection has {mine}: the same number "
                    f"written differently; {type_note}",
                )
                return ""
            self.add(
                n,
                "merchant",
                title,
                FAIL,
                f"GetPropertyList says ClientMerchantID {theirs} for {self.settings.property_id}, "
                f"the connection has {mine}: they differ; {type_note}",
                f"Set the connection's ClientMerchantID to {theirs} (what eSite has for property "
                f"{self.settings.property_id}), or have eSite's setting corrected.",
            )
            return ""
        if theirs:
            detail = f"GetPropertyList says {theirs}, the connection has {mine}: they match"
        else:
            detail = (
                f"GetPropertyList does not carry a ClientMerchantID for "
                f"{self.settings.property_id}: cannot compare; the connection has {mine}"
            )
        self.add(n, "merchant", title, OK if integer else WARN, f"{detail}; {type_note}")
        return ""

    # 7 ---------------------------------------------------------------------------------------
    def _evidence(self) -> None:
        seen = dict(self.seen)
        parts = []
        for status in ("C", "N"):
            codes = self.status_codes.get(status)
            if codes is None:
                continue
            total = sum(codes.values())
            found = ", ".join(f"{c or 'none'} on {k:,}" for c, k in sorted(codes.items()))
            parts.append(
                f"leasestatus={status}: {_plural(total, 'lease')}"
                + (f" (occustatuscode {found})" if found else "")
            )
        if parts and any(sum(c.values()) for c in self.status_codes.values()):
            seen.setdefault("lease status codes", (CONFIRMED, "; ".join(parts)))
        elif parts:
            seen.setdefault("lease status codes", (NOT_SEEN, "; ".join(parts)))
        for row in EVIDENCE_ROWS:
            status, text = seen.get(row, (NOT_SEEN, "not reached"))
            if row == "empty lists" and row not in seen and self.status_codes:
                status, text = NOT_SEEN, "every resident list read had data"
            self.report.evidence.append(Evidence(row, status, text))


def probe(settings: AmsiSettings, **options: Any) -> ProbeReport:
    """Run the read-only probe. ``options`` as ``_Probe``'s: ``client``, ``today``, ``days``,
    ``wsdl_timeout``, and ``progress``, called with each step as it finishes."""
    return _Probe(settings, **options).run()
