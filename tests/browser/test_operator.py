"""The operator's day in the admin, in a real browser against the live server and the eSite
sandbox over loopback: the dashboard on the admin home (a number followed to its list), a
posting eSite refused (the console's sentence, the XML collapsed; the cause fixed, retried,
posted), a payment voided, a Batch Deposit Report downloaded as CSV, and a month reconciled
against an uploaded External Deposits export with a difference (in words, and as CSV).

Each step is a screenshot, ``operator-NN-...png`` (tests/browser/conftest.py says where)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model

from integrations.models import Posting, PostingKind, PostingState
from rentplatform.models import PaymentState
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

PAID = "001-01-101-1"  # posts
VOIDED = "001-01-103-3"  # voided by the operator the same day
REFUSED = "001-01-102-2"  # blocked in eSite after our last sync: eSite refuses the payment


@pytest.fixture
def world(amsi_world):
    return amsi_world


@pytest.fixture
def day(world):
    """Three card payments of today: one posted, one to void, one eSite refuses (201)."""
    paid = world.pay(PAID, "1250.00")
    to_void = world.pay(VOIDED, "80.00")
    p, b, u, r = REFUSED.split("-")
    world.control.patch_lease(p, b, u, r, BlockPaymentAccess="Y")
    refused = world.pay(REFUSED, "50.00")
    assert world.posting(paid).state == PostingState.POSTED
    assert world.posting(to_void).state == PostingState.POSTED
    assert world.posting(refused).state == PostingState.NEEDS_ATTENTION
    return paid, to_void, refused


def messages(page) -> str:
    """The messages Django shows after an action (not the needs-a-person banner)."""
    return page.locator("ul.messagelist:not(#integrations-banner)").text_content() or ""


def fits(page, selector: str) -> bool:
    """Whether the element shows all its columns at 1,400 px, without scrolling sideways."""
    return page.locator(selector).evaluate("e => e.scrollWidth <= e.clientWidth")


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_operators_day(page, shot, world, day):
    paid, to_void, refused = day
    get_user_model().objects.create_superuser("olivia", "olivia@example.test", "pw-123456")
    log_in(page, "olivia", "pw-123456", admin=True)

    # -- 1. The dashboard on the admin home; its "needs attention" number opens the list. ------
    page.goto("/admin/")
    panel = page.locator(f"#integrations-connection-{world.connection.pk}")
    assert panel.locator(".connection-state").inner_text().startswith("enabled")
    assert "import" in panel.locator(".last-sync").inner_text().lower()
    needs = panel.locator(".postings a", has_text="Needs attention")
    assert needs.inner_text() == "Needs attention: 1"
    assert page.locator("#integrations-banner").inner_text().count("needs attention") == 1
    shot(page, "operator-01-dashboard")
    needs.click()
    page.wait_for_load_state()
    assert "state__exact=needs_attention" in page.url
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert fits(page, "#changelist .results")
    shot(page, "operator-02-needs-attention-list")

    # -- 2. The console: what happened, what to do, the XML collapsed. -----------------------
    rows.first.locator("th a, td a").first.click()
    page.wait_for_load_state()
    console = page.locator("#posting-console")
    said = console.locator(".console-what-happened").inner_text()
    assert "eSite refused the AddPayment with code 201" in said
    to_do = console.locator(".console-what-to-do").inner_text()
    assert "Lift the block in eSite and retry" in to_do
    assert "Outcome unknown" not in console.inner_text()
    request_doc = console.locator("details.console-document").first
    assert request_doc.get_attribute("open") is None
    assert not request_doc.locator("pre").is_visible()
    error = page.locator(".field-error_now .readonly").inner_text()
    assert "code 201" in error and "<" not in error  # the reply is under its own heading
    assert not page.locator("details.attempt-reply pre").first.is_visible()
    shot(page, "operator-03-console-refused")
    request_doc.locator("summary").click()
    assert request_doc.locator("pre").is_visible()
    assert "<" in request_doc.locator("pre").inner_text()
    request_doc.locator("summary").click()

    # -- 3. The cause fixed in eSite, then "Retry now": posted. -------------------------------
    p, b, u, r = REFUSED.split("-")
    world.control.patch_lease(p, b, u, r, BlockPaymentAccess="N")
    console.locator("#console-retry_postings input[type=submit]").click()
    page.wait_for_load_state()
    assert "queued for another attempt" in messages(page)
    posting = world.posting(refused)
    assert posting.state == PostingState.POSTED and posting.remote_reference
    landed = [e for e in world.entries(refused.batch.batch_id) if e["amount"] == "50.00"]
    assert landed, world.entries(refused.batch.batch_id)
    said = page.locator(".console-what-happened").inner_text()
    assert said.startswith("Posted to eSite") and "refused" not in said
    assert page.locator(".field-state .readonly").inner_text() == "Posted"
    assert page.locator(".field-error_now .readonly").inner_text() == "-"
    assert page.locator("#integrations-banner").count() == 0  # nothing waits for a person
    shot(page, "operator-04-retried-posted")

    # -- 4. Void a payment of today (the admin action). ---------------------------------------
    page.goto("/admin/rentplatform/payment/?state__exact=processing")
    page.locator(f"input[name=_selected_action][value='{to_void.pk}']").check()
    page.select_option("select[name=action]", "void_payments")
    assert fits(page, "#changelist .results")
    shot(page, "operator-05-void-chosen")
    page.locator("button[name=index]").click()
    page.wait_for_load_state()
    assert f"Payment {to_void.short_id} voided." in messages(page)
    to_void.refresh_from_db()
    assert to_void.state == PaymentState.VOIDED
    reversal = Posting.objects.get(reversal__payment=to_void, kind=PostingKind.REVERSAL)
    assert reversal.state == PostingState.POSTED
    assert "-80.00" in [e["amount"] for e in world.entries(to_void.batch.batch_id)]
    shot(page, "operator-06-voided")

    # -- 5. The day settles and is deposited (the processor's part); the report's CSV. --------
    world.settle_and_deposit(paid)
    batch = paid.batch
    page.goto("/admin/")
    page.locator(".app-integrations a", has_text="Batch deposit reports").first.click()
    page.locator("#result_list a", has_text=batch.batch_id).click()
    page.wait_for_load_state()
    shot(page, "operator-07-batch-deposit-report")
    with page.expect_download() as info:
        page.locator("a", has_text="Download CSV").click()
    assert info.value.suggested_filename == f"batch-deposit-report-{batch.batch_id}.csv"
    table = _rows(Path(info.value.path()).read_text(encoding="utf-8"))
    header = table.index(
        [
            "Type",
            "Resident",
            "Unit",
            "Lease ID in eSite",
            "Method",
            "Amount",
            "Our reference",
            "Reference in eSite",
            "Posting",
            "Note",
        ]
    )
    lines = [row for row in table[header + 1 :] if row][:4]
    assert [(r[0], r[3], r[5], r[8]) for r in lines] == [
        ("Payment", PAID, "1250.00", "Posted"),
        ("Payment", VOIDED, "80.00", "Posted"),
        ("Payment", REFUSED, "50.00", "Posted"),
        ("Void", VOIDED, "-80.00", "Posted"),
    ]
    assert lines[2][6].startswith(refused.short_id)  # the reference as the lists show it
    assert lines[2][7] == world.posting(refused).remote_reference  # eSite's receipt
    assert ["Net deposit", "1300.00"] in table

    # -- 6. Reconcile the month against an uploaded export that lacks one payment. ------------
    # The manager's export from eSite (the sandbox serves the same report), as eSite would
    # show it had the 50.00 payment never reached it.
    month = f"{batch.business_day:%Y-%m}"
    export = httpx.get(
        f"{world.server.base_url}/edexweb/esite/externaldeposits",
        params={"month": month, "level": "payment", "format": "csv", "property": "001"},
    ).text
    lines = [
        line.replace("1300.00", "1250.00")
        for line in export.splitlines()
        if ",50.00,0.00,0.00,0.00,50.00," not in line
    ]
    assert len(lines) == len(export.splitlines()) - 1
    page.goto("/admin/")
    page.locator(f"#integrations-connection-{world.connection.pk} .reconciliation a").click()
    page.wait_for_load_state()
    form = page.locator("#content form")
    assert form.locator("select[name=connection]").input_value() == str(world.connection.pk)
    page.fill("input[name=month]", month)
    form.locator("input[name=report]").set_input_files(
        files=[
            {
                "name": f"external-deposits-{month}.csv",
                "mimeType": "text/csv",
                "buffer": "\n".join(lines).encode(),
            }
        ]
    )
    shot(page, "operator-08-reconcile-upload")
    form.locator("input[type=submit][value=Reconcile]").click()
    page.wait_for_load_state()
    differences = page.locator("table.reconcile-differences tbody tr")
    words = [row.locator("td").nth(1).inner_text() for row in differences.all()]
    bid = batch.batch_id
    assert words == [
        f"batch {bid}: our total 1,300.00, eSite 1,250.00: one payment of 50.00 missing in eSite",
        f"batch {bid}: payment {refused.short_id} of 50.00 missing in eSite",
    ], words
    source = page.locator(".reconcile-source").inner_text()
    assert f"uploaded export external-deposits-{month}.csv" in source
    shot(page, "operator-09-reconcile-difference")
    with page.expect_download() as info:
        page.locator("a.reconcile-csv").click()
    assert info.value.suggested_filename == f"reconciliation-maple-{month}.csv"
    table = _rows(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [row[1:3] for row in table[1:]] == [[bid, words[0]], [bid, words[1]]], table

    # -- 7. The run is recorded: the dashboard shows it, its page keeps the differences. -------
    page.goto("/admin/")
    panel = page.locator(f"#integrations-connection-{world.connection.pk}")
    recorded = panel.locator(".reconciliation a", has_text=f"{month}: 2 differences")
    assert "by olivia, uploaded external-deposits" in panel.locator(".reconciliation").inner_text()
    banner = page.locator("#integrations-banner").inner_text()
    assert "last reconciliation of 1 connection found differences" in banner
    recorded.click()
    page.wait_for_load_state()
    table = page.locator("table.reconciliation-differences tbody tr")
    assert [row.locator("td").nth(1).inner_text() for row in table.all()] == words
    shot(page, "operator-10-reconciliation-recorded")
