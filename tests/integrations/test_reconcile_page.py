"""The reconcile page a manager uses: this month by default, differences in words with links to
the batch and the payment, the differences as a CSV, and links to the page (fake provider)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import FakeRemoteEntry, PostingKind
from rentplatform import services
from tests.factories import staff_user
from tests.integrations.fake_day import posted_day

URL = "admin:integrations_depositreport_reconcile"
PERMS = (
    "integrations.reconcile",
    "integrations.view_depositreport",
    "rentplatform.view_depositbatch",
    "rentplatform.view_payment",
    "rentplatform.view_reversal",
)


def _client(*perms: str) -> Client:
    client = Client()
    client.force_login(staff_user(*perms))
    return client


@pytest.fixture
def day(connection, lease, django_capture_on_commit_callbacks):
    """A payment and the refund of another, both posted to the fake remote."""
    return posted_day(lease, django_capture_on_commit_callbacks, "1250.00")


def _query(connection, payment, **extra) -> dict:
    return {"connection": connection.pk, "month": f"{payment.batch.business_day:%Y-%m}", **extra}


def test_the_page_defaults_to_this_month_where_the_property_is(connection):
    # Kiritimati is UTC+14: its month turns a day before most of the world's.
    connection.property.time_zone = "Pacific/Kiritimati"
    connection.property.save()
    page = _client(*PERMS).get(reverse(URL))
    html = page.content.decode()
    assert page.status_code == 200
    month = f"{connection.property.local_day():%Y-%m}"
    assert 'type="month"' in html
    assert f'value="{month}"' in html
    # The only enabled connection is chosen already.
    assert f'<option value="{connection.pk}" selected>' in html


def test_a_get_naming_a_connection_reconciles_this_month(connection, day):
    page = _client(*PERMS).get(reverse(URL), {"connection": connection.pk})
    assert "0 differences - our batches match the fake remote" in page.content.decode()


def test_a_difference_is_a_sentence_with_links_to_the_batch_and_the_payment(
    connection, lease, day, settings, django_capture_on_commit_callbacks
):
    paid, refund = day
    FakeRemoteEntry.objects.filter(key=refund.reference.hex).delete()
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    with django_capture_on_commit_callbacks(execute=True):
        unsent = services.accept_payment(lease, "50.00", "card")
    client = _client(*PERMS)
    html = client.get(reverse(URL), _query(connection, paid)).content.decode()
    batch, refunds = paid.batch.batch_id, refund.batch.batch_id
    assert unsent.batch.batch_id == batch != refunds  # a card batch and an ACH one
    assert (
        f"batch {batch}: our total 1,300.00, the fake remote 1,250.00: "
        "one payment of 50.00 missing in the fake remote"
    ) in html
    assert (
        f"batch {batch}: payment {unsent.public_id[:10]} of 50.00 missing in the fake remote"
    ) in html
    assert (
        f"batch {refunds}: our total 0.00, the fake remote 55.55: "
        "one refund of -55.55 missing in the fake remote"
    ) in html
    assert f"batch {refunds}: refund {refund.public_id[:10]} of -55.55 missing" in html
    assert "total_differs" not in html.replace("difference-total_differs", "")
    assert "AMSI" not in html

    batch_url = f"{reverse('admin:rentplatform_depositbatch_changelist')}?q={batch}"
    payment_url = reverse("admin:rentplatform_payment_change", args=[unsent.pk])
    refund_url = reverse("admin:rentplatform_reversal_change", args=[refund.pk])
    for url in (batch_url, payment_url, refund_url):
        assert f'href="{url}"' in html
    found = client.get(batch_url)
    assert found.status_code == 200 and batch in found.content.decode()
    assert unsent.public_id[:10] in client.get(payment_url).content.decode()
    assert client.get(refund_url).status_code == 200


def test_a_batch_the_remote_lacks_is_named_with_our_total(connection, day):
    paid, _ = day
    FakeRemoteEntry.objects.filter(key=paid.reference.hex).delete()
    html = _client(*PERMS).get(reverse(URL), _query(connection, paid)).content.decode()
    batch = paid.batch.batch_id
    assert f"batch {batch}: our total 1,250.00, not in the fake remote" in html
    assert f"batch {batch}: payment {paid.public_id[:10]} of 1,250.00 missing" in html


def test_the_differences_download_as_csv_with_formula_cells_neutralised(connection, day):
    paid, _ = day
    FakeRemoteEntry.objects.create(
        connection=connection,
        key='=HYPERLINK("http://evil.example","x")',
        kind=PostingKind.PAYMENT,
        amount=Decimal("7.00"),
        batch_id=paid.batch.batch_id,
        reference="FAKE-by-hand",
    )
    client = _client(*PERMS)
    page = client.get(reverse(URL), _query(connection, paid)).content.decode()
    assert "Download differences (CSV)" in page
    response = client.get(reverse(URL), _query(connection, paid, format="csv"))
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "Month",
        "Batch",
        "Difference",
        "Ours",
        "the fake remote",
        "Our reference",
        "the fake remote id",
    ]
    by_kind = {row[2].split(":")[1].strip().split(" ")[0]: row for row in rows[1:]}
    total = by_kind["our"]
    assert total[1:5] == [
        paid.batch.batch_id,
        f"batch {paid.batch.batch_id}: our total 1,250.00, the fake remote 1,257.00: "
        "1 other item difference, below",
        "1250.00",
        "1257.00",
    ]
    unknown = by_kind["the"]
    assert unknown[6] == '\'=HYPERLINK("http://evil.example","x")'
    assert "not one of ours" in unknown[2]
    # The form's own button posts for the CSV too (the way an uploaded export is kept).
    posted = client.post(reverse(URL), _query(connection, paid, format="csv"))
    assert posted["Content-Type"] == "text/csv"
    assert posted.content == response.content


def test_the_report_list_and_the_dashboard_link_to_the_page(connection):
    url = reverse(URL)
    listing = _client(*PERMS).get(reverse("admin:integrations_depositreport_changelist"))
    assert f'href="{url}"' in listing.content.decode()
    without = _client("integrations.view_depositreport")
    listing = without.get(reverse("admin:integrations_depositreport_changelist"))
    assert f'href="{url}"' not in listing.content.decode()
    assert without.get(url).status_code == 403
    client = Client()
    client.force_login(staff_user(is_superuser=True))
    assert f'href="{url}"' in client.get(reverse("admin:index")).content.decode()
