"""Probe a live AMSI eSite before go-live: read-only checks, each saying what it saw.

``probe(settings)`` runs the steps below against the eSite a connection (or an onboarding
manager's candidate settings) points at and returns a ``ProbeReport``; the ``amsi_probe``
command prints it, and the admin can show the same report.

1. the Leasing WSDL is reachable (network failures in words, not exception class names);
2. login and portfolio (GetPropertyList);
3. the property is in GetPropertyList (both shapes seen in production);
4. the ClientMerchantID matches what GetPropertyList says, and is an integer;
5. unit and resident counts (streamed: flat memory for a 100,000-lease property);
6. the delta query the importer uses, for the last days.

It is READ-ONLY: only Leasing reads are sent. Nothing in the Ledger service is called (no
AddPayment, ReturnPayment or UpdateSettlementData, and not its WSDL either); what only a real
payment can confirm is listed at the end, with the procedure in docs/amsi.md, "First payment on
a live eSite".

The report never holds the password: it is registered for masking and every text is masked.
"""

from __future__ import annotations

import datetime as dt
import errno
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from lxml import etree

from integrations.exceptions import IntegrationError, RetryableError
from integrations.logging import mask, register_secret

from .conf import AmsiSettings
from .errors import LoginRefused
from .identifiers import is_edex_int
from .properties import PropertyInfo, parse_property_list
from .queries import DELTA_OPERATION, delta_queries, residents_query, units_query
from .xmldocs import UnsafeXml, local, mdy, parse_document

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
CONFIRMED, NOT_SEEN = "confirmed", "not seen"

WSDL_TIMEOUT = 10.0  # seconds for the WSDL download (the client uses the same)
DELTA_DAYS = 7
FIRST_PAYMENT_DOC = 'docs/amsi.md, "First payment on a live eSite"'
EVIDENCE_DOC = "docs/amsi-evidence.md"

# Codes of the sandbox's own table the probe reads as more than "an empty list".
UNKNOWN_PORTFOLIO = "101"
UNKNOWN_PROPERTY = "102"

LEASING_READS = (
    "GetPropertyList",
    "GetPropertyUnits",
    "GetPropertyResidents",
    "GetResidentsByStatusChangeOrTransactionDate",
)

# What only a real payment can confirm (procedure: docs/amsi.md, "First payment on a live eSite").
PAYMENT_ONLY = (
    "AddPayment is accepted with this ClientMerchantID and our integer ClientTransactionID and "
    "ClientJnlNo, and opens an External cash batch numbered by our batch id (ClientJnlNo), "
    "Created By the eDex user (Ledger > Cash Batches)",
    "UpdateSettlementData closes that batch (its Approve mark) with the batch total",
    "ReturnPayment reverses the payment, and the settlement sent after a return is accepted",
    "whether eSite refuses a repeated ClientTransactionID (the connection's 'duplicates refused' "
    "confirmation: who and when)",
)

# The evidence table's rows (docs/amsi-evidence.md), by short stable name.
EVIDENCE_ROWS = (
    "login error reply",
    "GetPropertyList shape",
    "ClientMerchantID type",
    "lease status codes",
    "empty lists",
    "delta query",
)


@dataclass
class Step:
    number: int
    name: str
    title: str
    status: str
    detail: str
    fix: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "detail": mask(self.detail),
            "fix": mask(self.fix),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Evidence:
    row: str
    status: str
    seen: str

    def as_dict(self) -> dict[str, str]:
        return {"row": self.row, "status": self.status, "seen": mask(self.seen)}


@dataclass
class ProbeReport:
    target: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    payment_only: tuple[str, ...] = PAYMENT_ONLY

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.steps if s.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def fix(self) -> str:
        """One sentence naming what to fix (the first failure's), or ""."""
        failures = self.failures
        return mask(failures[0].fix) if failures else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": {k: mask(v) for k, v in self.target.items()},
            "read_only": True,
            "steps": [s.as_dict() for s in self.steps],
            "evidence": [e.as_dict() for e in self.evidence],
            "evidence_doc": EVIDENCE_DOC,
            "payment_only": list(self.payment_only),
            "first_payment_doc": FIRST_PAYMENT_DOC,
            "fix": self.fix,
        }


# -- network failures in words ---------------------------------------------------------------


def network_reason(err: BaseException, timeout: float = WSDL_TIMEOUT) -> str:
    """A transport failure as words a person can act on ("connection refused", ...)."""
    if isinstance(err, httpx.TimeoutException | TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s"
    seen: set[int] = set()
    cause: BaseException | None = err
    chain: list[BaseException] = []
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({item.verify_message or 'verification failed'})"
        if isinstance(item, ssl.SSLError):
            return f"TLS handshake failed ({item.reason or item})"
        if isinstance(item, socket.gaierror):
            return "name not resolved"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(item, OSError) and item.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable" if item.errno == errno.ENETUNREACH else "host unreachable"
    text = " ".join(str(item) for item in chain).lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("name or service not known", "name not resolved"),
        ("nodename nor servname", "name not resolved"),
        ("temporary failure in name resolution", "name not resolved"),
        ("getaddrinfo failed", "name not resolved"),
        ("no address associated", "name not resolved"),
        ("certificate verify failed", "TLS certificate not trusted"),
        ("wrong version number", "TLS handshake failed (is the port plain HTTP?)"),
        ("network is unreachable", "network unreachable"),
        ("no route to host", "host unreachable"),
        ("connection reset", "connection reset by the server"),
        ("timed out", f"timed out after {timeout:g} s"),
        ("server disconnected", "the server closed the connection without a reply"),
    ):
        if needle in text:
            return reason
    words = re.sub(r"\[Errno -?\d+\]\s*", "", str(chain[-1])).strip()
    return words or "the connection failed"


# -- the probe ---------------------------------------------------------------------------------


def _is_login_refusal(err: IntegrationError) -> bool:
    if isinstance(err, LoginRefused):
        return True
    text = (err.message or "").lower()
    return "fault" in text and any(
        word in text for word in ("credential", "password", "userid", "user id", "login")
    )


def _is_fault(err: IntegrationError) -> bool:
    return "soap fault" in (err.message or "").lower()


def _error_text(err: IntegrationError) -> str:
    """The eDex error description alone (without our wrapping words)."""
    text = err.message or ""
    for prefix in (
        "AMSI refused the login: ",
        "AMSI refused: ",
        "AMSI already has it: ",
        "AMSI asked to try again: ",
        "AMSI answered an error code this integration does not know: ",
    ):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _list_error(err: IntegrationError) -> str:
    return (
        f"AMSI answered with error code {err.code}: {_error_text(err)} "
        "(production clients took this for an empty list)"
    )


def _property_list_shape(root: etree._Element) -> str:
    """How GetPropertyList carries the ids: "attributes", "elements" or both."""
    shapes = set()
    for el in root.iter():
        if local(el.tag).lower() != "property":
            continue
        if any(k.lower() == "propertyid" for k in el.attrib):
            shapes.add("attributes")
        if any(local(c.tag).lower() == "propertyid" for c in el):
            shapes.add("elements")
    if not shapes:
        return ""
    return " and ".join(sorted(shapes))


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


class _Probe:
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

    @property
    def client(self):
        if self._client is None:
            from .client import get_client

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
                f"{url} answered HTTP {resp.status_code}: check the eDex base URL (it ends in "
                "…/edexweb/esite, the folder holding leasing.asmx and ledger.asmx).",
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
            if err.code == UNKNOWN_PORTFOLIO or "portfolio" in text.lower():
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
        self.see("empty lists", f"GetPropertyList: error code {err.code}: {text}")
        self.add(n, "login", title, WARN, f"GetPropertyList: {_list_error(err)}")
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

    # 5 ---------------------------------------------------------------------------------------
    def _count(self, operation: str, xmldata: str, element: str, statuses: Counter | None):
        """(count, error) for a streamed list: flat memory however long it is."""
        count = 0
        for el in self.client.stream_elements(operation, xmldata, element):
            count += 1
            if statuses is not None:
                statuses[(el.get("occustatuscode") or el.get("OccuStatusCode") or "").strip()] += 1
        return count

    def _list_step(
        self,
        n: int,
        name: str,
        title: str,
        operation: str,
        xmldata: str,
        element: str,
        *,
        what: str,
        empty_status: str,
        noun: str = "lease",
        statuses: Counter | None = None,
    ) -> tuple[str, Step]:
        """Count one list; (why the probe stops or "", the step line added)."""
        self._started = time.monotonic()
        try:
            count = self._count(operation, xmldata, element, statuses)
        except IntegrationError as err:
            return self._list_failure(n, name, title, operation, what, empty_status, err)
        if count == 0:
            self.seen.setdefault(
                "empty lists", (CONFIRMED, f"{operation}: an empty list document, no error code")
            )
        status = empty_status if count == 0 else OK
        self.last_list = _plural(count, noun)
        return "", self.add(n, name, title, status, f"{_plural(count, noun)} ({what})")

    def _list_failure(
        self,
        n: int,
        name: str,
        title: str,
        operation: str,
        what: str,
        empty_status: str,
        err: IntegrationError,
    ) -> tuple[str, Step]:
        pid = self.settings.property_id
        if _is_login_refusal(err):
            step = self.add(
                n,
                name,
                title,
                FAIL,
                f"{operation}: AMSI refused the user id or password",
                f"Fix the eDex UserID or the password: AMSI refused them for {operation}.",
            )
            return "the login was refused", step
        if err.code == UNKNOWN_PROPERTY:
            step = self.add(
                n,
                name,
                title,
                FAIL,
                f"{operation}: AMSI does not know property {pid!r} "
                f"(error code {err.code}: {_error_text(err)})",
                f"Set the AMSI PropertyId to the eSite property id (not {pid!r}); leading "
                "zeros matter.",
            )
            return "the property is unknown", step
        if err.code and not isinstance(err, RetryableError) and not _is_fault(err):
            self.last_list = f"error code {err.code}: {_error_text(err)}"
            self.seen.setdefault("empty lists", (CONFIRMED, f"{operation}: {self.last_list}"))
            return "", self.add(n, name, title, empty_status, f"{what}: {_list_error(err)}")
        words = err.message or "no usable reply"
        step = self.add(
            n,
            name,
            title,
            FAIL,
            f"{operation} failed: {words}",
            f"{operation} failed ({words}): try again; if it persists, ask AMSI whether the "
            "eDex services are up.",
        )
        return f"{operation} failed", step

    def step_counts(self, n: int) -> str:
        pid = self.settings.property_id
        stop, _ = self._list_step(
            n,
            "units",
            "Units",
            "GetPropertyUnits",
            units_query(pid),
            "Unit",
            what="GetPropertyUnits, all statuses",
            noun="unit",
            empty_status=WARN,
        )
        if stop:
            return stop
        # Production clients alerted on an error document for current residents and only
        # logged it for other statuses: the same here (WARN for C, OK for N).
        for status, label, empty_status in (("C", "Current", WARN), ("N", "Notice", OK)):
            stop, _ = self._list_step(
                n,
                f"residents_{status}",
                f"{label} residents ({status})",
                "GetPropertyResidents",
                residents_query(pid, status),
                "Lease",
                what=f"GetPropertyResidents leasestatus={status}",
                empty_status=empty_status,
                statuses=self.status_codes.setdefault(status, Counter()),
            )
            if stop:
                return stop
        return ""

    # 6 ---------------------------------------------------------------------------------------
    def step_delta(self, n: int) -> str:
        start = self.today - dt.timedelta(days=self.days)
        span = f"{mdy(start)} to {mdy(self.today)}"
        seen = []
        for what, query in delta_queries(self.settings.property_id, start, self.today):
            stop, step = self._list_step(
                n,
                "delta",
                _TITLES[n],
                DELTA_OPERATION,
                query,
                "Lease",
                what=f"{DELTA_OPERATION}, {what} from {span}",
                empty_status=OK,
            )
            if stop:
                return stop
            if step.status != OK:
                return ""
            seen.append(f"{what}: {self.last_list}")
        self.see("delta query", f"answered for {span} ({'; '.join(seen)})")
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
                status, text = NOT_SEEN, "every list read had data"
            self.report.evidence.append(Evidence(row, status, text))


_TITLES = {
    1: "Leasing WSDL",
    2: "Login and portfolio",
    3: "Property in GetPropertyList",
    4: "ClientMerchantID",
    5: "Units and residents",
    6: "Delta query",
}


def probe(
    settings: AmsiSettings,
    *,
    client: Any = None,
    today: dt.date | None = None,
    days: int = DELTA_DAYS,
    wsdl_timeout: float = WSDL_TIMEOUT,
    progress: Callable[[Step], None] | None = None,
) -> ProbeReport:
    """Run the read-only probe; ``progress`` is called with each step as it finishes."""
    return _Probe(
        settings,
        client=client,
        today=today,
        days=days,
        wsdl_timeout=wsdl_timeout,
        progress=progress,
    ).run()
