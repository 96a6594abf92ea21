"""Reads that survive a real eSite (real loopback HTTP against the sandbox).

eSite answers a list read with nothing in it either with an error document (InternetTrafficResponse,
code 103 in the sandbox) or with an empty result root: the sandbox's ``empty_list`` variant picks
one. Production clients read an error document on a resident list as an empty list; this
integration does too, but never takes it for "no current leases": a full resync whose current
list is an error document deactivates nothing and says why. Leases of another AMSI status (the
delta query returns every status) are kept with their code and blocked.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from lxml import etree

from integrations.importing import Importer
from integrations.models import SyncRun, SyncStatus
from integrations.services import run_sync
from integrations_amsi.mapping import lease_record
from integrations_amsi.models import AmsiLeaseLink
from integrations_amsi.provider import AmsiProvider
from rentplatform.models import Lease, LeaseStatus

pytestmark = pytest.mark.django_db

EMPTY_LIST = pytest.mark.parametrize("empty_list", ["error", "empty"])
REFUSED_TEXT = "AMSI answered the current-residents list with an error (code 103: No data found"


def patch(control, link: AmsiLeaseLink, **changes: str) -> dict:
    return control.patch_lease(
        link.property_id, link.bldg_id, link.unit_id, link.resi_id, **changes
    )


def links(status: str | None = None) -> list[AmsiLeaseLink]:
    qs = AmsiLeaseLink.objects.select_related("lease").order_by("pk")
    if status:
        qs = qs.filter(lease__status=status)
    return list(qs)


def sandbox_keys(server, occustatuscode: str) -> list[tuple[str, str, str, str]]:
    with server.sandbox.store.read() as c:
        return [
            tuple(row)
            for row in c.execute(
                "SELECT property_id, bldg_id, unit_id, resi_id FROM leases "
                "WHERE occustatuscode=? ORDER BY seq",
                (occustatuscode,),
            )
        ]


def age_sandbox_changes(server) -> None:
    """Every status change the sandbox knows happened long ago: the delta finds nothing."""
    with server.sandbox.store.tx() as c:
        c.execute("UPDATE status_changes SET changed_at='2001-01-01T00:00:00.000000'")


def imported(connection) -> SyncRun:
    run = run_sync(connection, "import")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    return run


# -- a property with no notice leases ------------------------------------------------------------
@EMPTY_LIST
def test_a_property_with_no_notice_leases_imports(
    amsi_sandbox, amsi_connection, control, caplog, empty_list
):
    control.set_variants(empty_list=empty_list)
    for key in sandbox_keys(amsi_sandbox, "N"):
        control.patch_lease(*key, occustatuscode="C")
    caplog.set_level(logging.INFO, logger="integrations_amsi.importer")
    run = run_sync(amsi_connection, "import")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert (run.created, run.errors, run.deactivated) == (24, 0, 0)
    assert not Lease.objects.filter(status=LeaseStatus.NOTICE).exists()
    refused = [r for r in caplog.records if "error document" in r.getMessage()]
    if empty_list == "error":
        (record,) = refused
        assert record.levelno == logging.INFO  # the notice list: info, not an alert
        assert "leasestatus N" in record.getMessage() and "001" in record.getMessage()
        assert "103" in record.getMessage()
    else:
        assert refused == []


# -- the delta query ------------------------------------------------------------------------------
@EMPTY_LIST
def test_a_delta_with_nothing_changed_succeeds_with_no_changes(
    amsi_sandbox, amsi_connection, control, empty_list
):
    imported(amsi_connection)
    control.set_variants(empty_list=empty_list)
    # Right after the import: the leases loaded today come back, unchanged; no transactions.
    run = run_sync(amsi_connection, "delta")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert (run.total_changes, run.errors) == (0, 0)
    # Nothing at all in the window: both requests answer "nothing".
    age_sandbox_changes(amsi_sandbox)
    run = run_sync(amsi_connection, "delta")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert (run.total_changes, run.unchanged, run.errors) == (0, 0, 0)
    assert "nothing changed" in run.summary()
    assert all(link.active for link in links())


class RecordingClient:
    def __init__(self):
        self.calls: list[tuple[str, etree._Element]] = []

    def stream_elements(self, operation, xmldata, element):
        self.calls.append((operation, etree.fromstring(xmldata)))
        return iter(())


class RecordingProvider(AmsiProvider):
    """The AMSI provider with its client swapped for one that records the requests."""

    def __init__(self, connection, client):
        super().__init__(connection)
        self._recording = client

    @property
    def client(self):
        return self._recording


def test_the_delta_sends_what_corelogic_sent(amsi_connection):
    """Every element present, in CoreLogic's order, MM/DD/YYYY; one range per request and the
    other sent empty (AMSIUtil.processHR); a day of margin either side."""
    run = SyncRun.objects.create(connection=amsi_connection, kind="delta")
    client = RecordingClient()
    importer = Importer(RecordingProvider(amsi_connection, client), run)
    tz = amsi_connection.property.tz
    since = dt.datetime(2024, 3, 10, 7, 30, tzinfo=dt.UTC)  # 03/09 evening in Los Angeles
    importer.execute(since=since)
    start = "03/08/2024"
    end = (importer.now.astimezone(tz).date() + dt.timedelta(days=1)).strftime("%m/%d/%Y")
    names = [
        "propertyid",
        "statuschangedatefrom",
        "statuschangedateto",
        "transactiondatefrom",
        "transactiondateto",
    ]
    got = [(op, [(c.tag, c.text or "") for c in root]) for op, root in client.calls]
    operation = "GetResidentsByStatusChangeOrTransactionDate"
    assert got == [
        (operation, list(zip(names, ["001", start, end, "", ""], strict=True))),
        (operation, list(zip(names, ["001", "", "", start, end], strict=True))),
    ]
    assert run.message == f"changes from {start} to {end}"


@EMPTY_LIST
def test_a_delta_answered_with_an_error_document_says_so_on_the_run(
    amsi_connection, control, empty_list
):
    """Nothing changed: the sandbox answers the delta query with its "no data" error document
    (empty_list=error) or an empty list. The first is read as no changes, which is our reading
    (production read error documents as empty lists on resident lists only), so the run's
    message says what eSite answered: a delta that always answers so is seen."""
    imported(amsi_connection)
    control.set_variants(empty_list=empty_list)
    run = run_sync(amsi_connection, "delta")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    said = "the delta query for transactions answered an error document (code 103: "
    if empty_list == "error":
        assert said in run.message and "read as no changes" in run.message
        assert run.message.startswith("changes from ")
    else:
        assert "error document" not in run.message


def test_a_full_resync_says_how_many_changes_no_delta_brought(
    amsi_sandbox, amsi_connection, control
):
    """What eSite's delta query counts as a change is not known. A block the delta did not list
    (here the sandbox forgets it was a change) reaches the platform at the full resync, and
    that run says so: a person sees that the delta misses changes, and which kind."""
    imported(amsi_connection)
    link = links(LeaseStatus.ACTIVE)[0]
    patch(control, link, BlockPaymentAccess="Y")
    age_sandbox_changes(amsi_sandbox)  # as if eSite's delta query did not count it
    delta = run_sync(amsi_connection, "delta")
    assert delta.status == SyncStatus.SUCCEEDED and delta.updated == 0, delta.message
    link.lease.refresh_from_db()
    assert link.lease.accounting_access == "allowed"  # the delta did not bring it
    full = run_sync(amsi_connection, "full")
    assert full.status == SyncStatus.SUCCEEDED and full.updated == 1, full.message
    assert (
        "1 lease had changed in eSite without a delta resync bringing the change, 1 of "
        "them in payment access, though delta resyncs ran since the last full read" in full.message
    )
    link.lease.refresh_from_db()
    assert link.lease.accounting_access == "blocked"
    # No delta ran since that full read: finding a change is what a full resync is for.
    patch(control, link, BlockPaymentAccess="N")
    again = run_sync(amsi_connection, "full")
    assert again.updated == 1 and "without a delta resync" not in again.message


# -- the current list answered with an error document ---------------------------------------------
@EMPTY_LIST
def test_a_full_resync_whose_current_list_fails_deactivates_nothing(
    amsi_connection, control, caplog, empty_list
):
    import_run = imported(amsi_connection)
    current, notice = links(LeaseStatus.ACTIVE), links(LeaseStatus.NOTICE)
    assert current and notice
    # A valid change on the notice list must land even when the current list fails.
    patch(control, notice[0], BlockPaymentAccess="Y")
    # Nothing of status C left: eSite answers the current list with nothing.
    for link in current:
        patch(control, link, occustatuscode="P")
    control.set_variants(empty_list=empty_list)
    caplog.set_level(logging.INFO, logger="integrations_amsi.importer")
    run = run_sync(amsi_connection, "full")
    notice_lease = Lease.objects.get(pk=notice[0].lease_id)
    assert notice_lease.accounting_access == "blocked"
    assert "Block Payment Access" in notice_lease.accounting_access_reason
    if empty_list == "error":
        assert run.status == SyncStatus.PARTIAL  # "finished with errors": a person must look
        assert run.deactivated == 0
        assert all(link.active for link in links())
        assert not Lease.objects.filter(status=LeaseStatus.INACTIVE).exists()
        assert REFUSED_TEXT in run.message
        assert "no lease was marked inactive" in run.message
        assert "Check the property in eSite, then resync." in run.message
        (error,) = run.error_list
        assert error["record"] == "property 001" and error["message"].startswith(REFUSED_TEXT)
        assert run.message.endswith(error["message"])
        assert REFUSED_TEXT in run.summary()
        # The next delta starts where the last complete read ended, not at this run.
        assert run.window_end == import_run.window_end
        alerts = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(alerts) == 1 and "leasestatus C" in alerts[0].getMessage()
    else:
        # A valid, empty current list is AMSI saying there are no current leases.
        assert run.status == SyncStatus.SUCCEEDED, run.message
        assert run.deactivated == len(current)
        assert Lease.objects.filter(status=LeaseStatus.INACTIVE).count() == len(current)
    # Fixed in eSite, then resynced: every lease is current again.
    for link in current:
        patch(control, link, occustatuscode="C")
    run = run_sync(amsi_connection, "full")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.deactivated == 0 and all(link.active for link in links())
    assert Lease.objects.filter(status=LeaseStatus.ACTIVE).count() == len(current)


@EMPTY_LIST
def test_a_property_listed_with_no_lease_at_all_deactivates_nothing(
    amsi_connection, control, empty_list
):
    """Both lists empty while leases are linked: a wrong property or permission is likelier
    than a property emptied overnight (RentTrack's production client aborted here)."""
    imported(amsi_connection)
    linked = links()
    for link in linked:
        patch(control, link, occustatuscode="P")
    control.set_variants(empty_list=empty_list)
    run = run_sync(amsi_connection, "full")
    assert run.status == SyncStatus.PARTIAL, run.message
    assert run.deactivated == 0 and all(link.active for link in links())
    assert not Lease.objects.filter(status=LeaseStatus.INACTIVE).exists()
    assert "no lease was marked inactive" in run.message


class NoDeltaProvider(AmsiProvider):
    """The AMSI provider talking to the sandbox, except that eSite's delta query lists nothing
    (a change it does not count as one, or one older than the window asked for), so a lease
    sync has to find the lease in the current and notice lists."""

    def _changes(self, feed, start, end):
        return iter(())


def test_a_lease_sync_finds_a_change_in_the_delta_first(amsi_connection, control):
    """A status set in eSite comes back by the delta query: the lease is updated (blocked,
    its code kept), never deactivated, and the resident lists are not streamed."""
    imported(amsi_connection)
    current = links(LeaseStatus.ACTIVE)
    for link in current:
        patch(control, link, occustatuscode="P")
    run = run_sync(amsi_connection, "lease", lease_id=current[0].lease_id)
    assert (run.status, run.updated, run.deactivated) == (SyncStatus.SUCCEEDED, 1, 0), run.message
    link = AmsiLeaseLink.objects.select_related("lease").get(pk=current[0].pk)
    assert link.active and link.raw["occustatuscode"] == "P"
    assert link.lease.accounting_access == "blocked"


def test_a_lease_sync_whose_current_list_fails_keeps_the_lease(amsi_connection, control):
    imported(amsi_connection)
    current = links(LeaseStatus.ACTIVE)
    for link in current:
        patch(control, link, occustatuscode="P")
    run = SyncRun.objects.create(connection=amsi_connection, kind="lease")
    Importer(NoDeltaProvider(amsi_connection), run).execute(lease_id=current[0].lease_id)
    assert run.errors == 1
    assert REFUSED_TEXT in run.message
    assert f"lease {current[0].composite} was not marked inactive" in run.message
    assert run.deactivated == 0
    assert AmsiLeaseLink.objects.get(pk=current[0].pk).active


# -- leases of another AMSI status -----------------------------------------------------------------
def test_a_lease_of_another_status_arriving_by_delta_is_blocked(amsi_connection, control):
    imported(amsi_connection)
    link = next(
        x for x in links(LeaseStatus.ACTIVE) if x.lease.effective_access.access == "allowed"
    )
    patch(control, link, occustatuscode="P")
    run = run_sync(amsi_connection, "delta")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.updated == 1 and run.deactivated == 0
    lease = Lease.objects.get(pk=link.lease_id)
    access = lease.effective_access
    assert access.access == "blocked" and access.source == "accounting"
    assert "lease status P (Past) in AMSI" in access.reason
    assert not access.allows("card") and not access.allows("ach")
    assert lease.status == LeaseStatus.ACTIVE  # kept: never deactivated by its code alone
    link.refresh_from_db()
    assert link.active and link.raw["occustatuscode"] == "P"
    # Current again in AMSI: payable again.
    patch(control, link, occustatuscode="C")
    run = run_sync(amsi_connection, "delta")
    lease.refresh_from_db()
    assert lease.effective_access.access == "allowed"
    assert lease.accounting_access_reason == ""


def test_a_new_lease_of_another_status_arrives_blocked(amsi_connection, control):
    imported(amsi_connection)
    control.add_lease(
        "001",
        b'<Lease PropertyId="001" BldgID="01" UnitID="101" ResiID="900" Name="Future Tenant" '
        b'occustatuscode="F" occustatuscodedescription="Future" CreditStatus="N" '
        b'BlockPaymentAccess="N" EndBalance="0">'
        b'<Occupant OccuSeqNo="1" OccuFirstName="Fay" OccuLastName="Future" '
        b'ResponsibleFlag="Responsible"/></Lease>',
    )
    run = run_sync(amsi_connection, "delta")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.created == 1
    link = AmsiLeaseLink.objects.select_related("lease").get(resi_id="900", unit_id="101")
    assert link.raw["occustatuscode"] == "F"
    assert link.lease.accounting_access == "blocked"
    assert "lease status F (Future)" in link.lease.accounting_access_reason
    assert link.lease.accounting_access_since is not None


def test_lease_status_codes_map_to_access():
    def record(**attrs: str):
        base = {"PropertyId": "001", "BldgID": "01", "UnitID": "101", "ResiID": "1"}
        return lease_record(etree.Element("Lease", {**base, **attrs}))

    for code, status in (("C", "active"), ("N", "notice"), ("c", "active"), ("", "active")):
        rec = record(occustatuscode=code) if code else record()
        assert rec.payable and rec.status == status and rec.access == "allowed"
    rec = record(occustatuscode="P")
    assert not rec.payable and rec.status == ""  # the host lease's status is left as it is
    reason = "lease status P in AMSI: neither current nor on notice"
    assert (rec.access, rec.access_reason) == ("blocked", reason)
    # The stricter and more specific AMSI block keeps its own reason.
    rec = record(occustatuscode="P", BlockPaymentAccess="Y")
    assert (rec.access, rec.access_reason) == ("blocked", "Block Payment Access is set in AMSI")
    # A No Checks lease of another status is not "cards only": it is blocked.
    assert record(occustatuscode="A", CreditStatus="C").access == "blocked"


def test_credit_status_codes_map_to_access_and_an_unknown_code_blocks():
    """N and C are seen on the wire, H and R inferred (docs/amsi-evidence.md): a code outside
    them might be a Hold under another letter, so it blocks, naming the code."""

    def access(**attrs: str):
        base = {"PropertyId": "001", "BldgID": "01", "UnitID": "101", "ResiID": "1"}
        rec = lease_record(etree.Element("Lease", {**base, **attrs}))
        return rec.access, rec.access_reason

    assert access() == ("allowed", "")  # no CreditStatus attribute: Normal
    assert access(CreditStatus="N") == ("allowed", "")
    assert access(CreditStatus="C") == ("cards_only", "credit status No Checks in AMSI")
    # H and R: the letters are our inference, so eSite's own name is shown where it sends one.
    assert access(CreditStatus="h") == ("blocked", "credit status H in AMSI (read as Hold)")
    assert access(CreditStatus="R") == ("blocked", "credit status R in AMSI (read as Restricted)")
    held = access(CreditStatus="H", CreditStatusDescription="Hold - Legal")
    assert held == ("blocked", "credit status Hold - Legal in AMSI")
    state, reason = access(CreditStatus="X")
    assert state == "blocked"
    assert reason.startswith("credit status 'X' in AMSI: a code this integration does not know")
    state, reason = access(CreditStatus="X", CreditStatusDescription="Collections")
    assert reason.startswith("credit status 'X' (Collections) in AMSI: a code this")


# -- refusals that still fail the run --------------------------------------------------------------
@pytest.mark.parametrize("login_error", ["document", "fault"])
@pytest.mark.parametrize("kind", ["import", "full", "delta"])
def test_a_login_refusal_still_fails_the_run(amsi_connection, control, kind, login_error):
    if kind != "import":
        imported(amsi_connection)
    control.set_variants(login_error=login_error, empty_list="error")
    amsi_connection.credentials = {"password": "not-the-password"}
    amsi_connection.save()
    run = run_sync(amsi_connection, kind)
    assert run.status == SyncStatus.FAILED
    assert "refused the login" in run.message
    assert "not-the-password" not in run.message
    assert (run.created, run.updated, run.deactivated) == (0, 0, 0)
    assert all(link.active for link in links())


@pytest.mark.parametrize("kind", ["import", "delta"])
def test_an_unknown_property_still_fails_the_run(amsi_connection, kind):
    amsi_connection.settings["property_id"] = "999"
    amsi_connection.save()
    run = run_sync(amsi_connection, kind)
    assert run.status == SyncStatus.FAILED
    assert "102" in run.message


def test_the_missed_by_delta_line_counts_in_words():
    from integrations.importing import missed_by_delta

    at = dt.datetime(2026, 11, 27, 6, 5, tzinfo=dt.UTC)
    line = missed_by_delta(3, 0, "eSite", at)
    assert line.startswith("3 leases had changed in eSite without a delta resync bringing the ")
    assert "payment access" not in line and "(the last at 06:05)" in line
    assert ", 2 of them in payment access," in missed_by_delta(3, 2, "eSite", at)
