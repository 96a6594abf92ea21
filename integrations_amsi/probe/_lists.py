"""Steps 5 and 6 of the probe: the list reads (units, residents, the delta query), streamed,
and how their failures read."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

from lxml import etree

from integrations.exceptions import IntegrationError, RetryableError

from ..errors import UNKNOWN_PROPERTY, LoginRefused
from ..queries import DELTA_OPERATION, delta_queries, residents_query, units_query
from ..xmldocs import local, mdy
from .report import _TITLES, CONFIRMED, FAIL, NOT_SEEN, OK, WARN, Step


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


# How an error document answering a list read is read, in the step's line.
AS_EMPTY_LIST = "production clients took this for an empty list"
# Production did so for resident lists only: for other list reads it is our reading.
AS_EMPTY_OTHER = "read as an empty list, as production read resident lists"
# Production read error documents as empty lists for resident-list reads only: nothing shows
# what one means on the delta query. "No changes" is our reading.
AS_NO_CHANGES = "read as no changes: our reading, not seen in production for this call"


# The reads the evidence row "empty lists" is about: production read an error document as an
# empty list on these (resident lists) only, so only these confirm what eSite answers there;
# units or the property list answering so are said on their step, and confirm nothing.
RESIDENT_LISTS = ("GetPropertyResidents",)


def _list_error(err: IntegrationError, reading: str = AS_EMPTY_LIST) -> str:
    return f"AMSI answered with error code {err.code}: {_error_text(err)} ({reading})"


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


class _ListSteps:
    """The list-reading steps of ``_Probe`` (a mixin: it uses the probe's client, ``add``,
    ``see`` and state)."""

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
        reading: str = AS_EMPTY_LIST,
    ) -> tuple[str, Step]:
        """Count one list; (why the probe stops or "", the step line added). When eSite
        answered an error document, ``last_error_document`` says "code X, text Y"."""
        self._started = time.monotonic()
        self.last_error_document = ""
        if reading == AS_EMPTY_LIST and operation != "GetPropertyResidents":
            reading = AS_EMPTY_OTHER
        try:
            count = self._count(operation, xmldata, element, statuses)
        except IntegrationError as err:
            return self._list_failure(n, name, title, operation, what, empty_status, err, reading)
        if count == 0 and operation in RESIDENT_LISTS:
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
        reading: str = AS_EMPTY_LIST,
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
                f"{operation}: AMSI refused property {pid!r} with error code {err.code}: "
                f"{_error_text(err)} (in the sandbox, {err.code} means an unknown property; what "
                "a real eSite means by it is not known)",
                f"Check the AMSI PropertyId against eSite's property id (not {pid!r}); leading "
                "zeros matter.",
            )
            return "the property is unknown", step
        if err.code and not isinstance(err, RetryableError) and not _is_fault(err):
            self.last_list = f"error code {err.code}: {_error_text(err)}"
            self.last_error_document = f"code {err.code}, text {_error_text(err)}"
            if operation in RESIDENT_LISTS:
                self.seen.setdefault("empty lists", (CONFIRMED, f"{operation}: {self.last_list}"))
            detail = f"{what}: {_list_error(err, reading)}"
            return "", self.add(n, name, title, empty_status, detail)
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
        """The importer's two delta requests. An error document is read as no changes (the
        line shows its code and text), but it confirms nothing: the "delta query" row is then
        not seen, with what eSite answered."""
        start = self.today - dt.timedelta(days=self.days)
        span = f"{mdy(start)} to {mdy(self.today)}"
        seen: list[str] = []
        errors: list[str] = []
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
                reading=AS_NO_CHANGES,
            )
            if stop:
                return stop
            if step.status != OK:
                return ""
            if self.last_error_document:
                errors.append(f"{what}: {self.last_error_document}")
            else:
                seen.append(f"{what}: {self.last_list}")
        if errors:
            listed = f"; a list for {'; '.join(seen)}" if seen else ""
            self.see(
                "delta query",
                f"answered an error document for {span} ({'; '.join(errors)}): read as no "
                f"changes, which confirms nothing{listed}",
                NOT_SEEN,
            )
        else:
            self.see("delta query", f"answered for {span} ({'; '.join(seen)})")
        return ""
