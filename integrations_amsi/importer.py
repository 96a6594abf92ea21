"""Reading a property's units and leases from AMSI: the provider's import hooks.

The framework (``integrations.importing``) compares and writes; this module only asks eSite and
maps what it answers (``mapping``):

- Resident lists are streamed (``EdexClient.stream_elements``): a 100,000-lease reply is never
  held whole.
- eSite is asked once per lease status, current (C) then notice (N): the only statuses residents
  pay on, and the only ones production clients read.
- An eDex error document answering a list read (the sandbox's 103 "no data", or any code but
  a login refusal or an unknown property) is an empty list, as production clients read it for
  resident lists (for units and the delta query, that reading is ours): a WARNING for the
  current list, INFO for the others. It is never taken for "no current leases": the
  current list answered that way is reported to the framework as incomplete, so nothing is
  marked inactive and the run says why.
- A lease of another property in the reply is a bad record, named and skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from integrations.exceptions import IntegrationError, RetryableError
from integrations.importing import Feed
from integrations.records import BadRecord, LeaseRecord, UnitRecord

from . import mapping
from .errors import is_error_document
from .queries import DELTA_OPERATION, delta_queries, residents_query, units_query

log = logging.getLogger(__name__)

LEASE_STATUSES = ("C", "N")  # current and notice: eSite is asked once per status
CURRENT = "C"


class AmsiImport:
    """The import hooks of ``AmsiProvider`` (which supplies ``client`` and ``settings``)."""

    # -- mapping -------------------------------------------------------------------------------
    def unit_record(self, item) -> UnitRecord:
        return mapping.unit_record(item)

    def lease_record(self, item) -> LeaseRecord:
        rec = mapping.lease_record(item)
        property_id = rec.key[0]
        if property_id != self.settings.property_id:
            raise BadRecord(rec.label, f"belongs to property {property_id}, not this connection's")
        return rec

    def property_label(self) -> str:
        return f"property {self.settings.property_id}"

    # -- reads ---------------------------------------------------------------------------------
    def read_units(self, feed: Feed) -> Iterator:
        # Streamed like the resident lists: a 100,000-unit reply is one text node over
        # libxml2's 10 MB limit for a parsed tree.
        query = units_query(self.settings.property_id)
        yield from self._stream(feed, "GetPropertyUnits", query, element="Unit")

    def read_leases(self, feed: Feed) -> Iterator:
        for status in LEASE_STATUSES:
            query = residents_query(self.settings.property_id, status)
            yield from self._stream(feed, "GetPropertyResidents", query, status=status)

    def read_changed_leases(self, feed: Feed, since: dt.datetime | None) -> Iterator:
        start, end = self._delta_days(feed, since)
        feed.say(f"changes from {start:%m/%d/%Y} to {end:%m/%d/%Y}")
        yield from self._changes(feed, start, end)

    def read_lease(self, feed: Feed, link):
        """One linked lease ("sync now" for the lease), as fast as eSite allows without guessing.

        First the delta query since the lease was last read: the lease is in it if eSite
        counts what changed (a block, a credit status, a status change, a transaction) as a
        change, which is not known. No public client shows what GetSingleResident takes, so a
        lease the delta does not list is then looked for in the current and notice lists, its
        last known status first: the lease is read whether or not the delta lists it.
        """
        wanted = (link.bldg_id, link.unit_id, link.resi_id)
        start, end = self._delta_days(feed, link.last_synced_at)
        found = self._find(self._changes(feed, start, end), wanted)
        if found is not None:
            return found
        first = (link.raw or {}).get("occustatuscode", "").strip().upper()
        statuses = sorted(LEASE_STATUSES, key=lambda status: status != first)
        for status in statuses:
            query = residents_query(self.settings.property_id, status)
            leases = self._stream(feed, "GetPropertyResidents", query, status=status)
            found = self._find(leases, wanted)
            if found is not None:
                return found
        return None

    @staticmethod
    def _find(elements: Iterator, wanted: tuple[str, str, str]):
        try:
            for el in elements:
                ids = tuple(el.get(name, "").strip() for name in ("BldgID", "UnitID", "ResiID"))
                if ids == wanted:
                    return el
            return None
        finally:
            getattr(elements, "close", lambda: None)()  # a stream stops reading once found

    @staticmethod
    def _delta_days(feed: Feed, since: dt.datetime | None) -> tuple[dt.date, dt.date]:
        # eDex takes days, not times. Which clock and time zone eSite stamps changes with is not
        # known, so ask with a day's margin on each side of the property's days: from the day
        # before the last sync's day to the day after today. Unchanged leases are skipped by
        # their digest anyway.
        tz = feed.property.tz
        start = (since or feed.now - dt.timedelta(days=1)).astimezone(tz).date()
        return start - dt.timedelta(days=1), feed.now.astimezone(tz).date() + dt.timedelta(days=1)

    def _changes(self, feed: Feed, start: dt.date, end: dt.date) -> Iterator:
        # The requests production clients sent: queries.delta_queries.
        for what, query in delta_queries(self.settings.property_id, start, end):
            yield from self._stream(feed, DELTA_OPERATION, query, what=what)

    def _stream(
        self, feed: Feed, operation: str, xmldata: str, element="Lease", status="", what=""
    ):
        try:
            yield from self.client.stream_elements(operation, xmldata, element)
        except IntegrationError as err:
            if isinstance(err, RetryableError) or not is_error_document(err):
                raise  # login refused, unknown property, transport, "try again": run fails
            # Production (RentTrack) read an error document on a list as an empty list: an
            # alert for current residents, info for the other statuses.
            log.log(
                logging.WARNING if status == CURRENT else logging.INFO,
                "AMSI answered %s%s for property %s with an error document (code %s: %s); "
                "read as %s",
                operation,
                f" (leasestatus {status})" if status else f" ({what})" if what else "",
                self.settings.property_id,
                err.code,
                _description(err),
                "no changes" if operation == DELTA_OPERATION else "an empty list",
            )
            if operation == DELTA_OPERATION:
                # Said on the run: production read error documents as empty lists on resident
                # lists only, so "no changes" is our reading of this one. A delta that always
                # answers so finds no block until the nightly full resync.
                feed.say(
                    f"the delta query for {what} answered an error document (code {err.code}: "
                    f"{_description(err)}), read as no changes",
                    last=True,
                )
            if status == CURRENT:
                feed.incomplete(
                    f"AMSI answered the current-residents list with an error (code {err.code}: "
                    f"{_description(err)})"
                )


def _description(err: IntegrationError) -> str:
    """eSite's ErrorDescription (error_for puts it after the message's prefix)."""
    return getattr(err, "description", "") or err.message.split(": ", 1)[-1]
