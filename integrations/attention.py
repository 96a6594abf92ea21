"""Telling the property's managers what waits for them: a mail listing the postings that need a
person (needs attention, unconfirmed), so nobody has to open the console to find them.

The schedule ``integrations.attention_mail`` (every ``ATTENTION_MAIL_MINUTES``, 15; 0 turns it
off) runs ``attention_mail``: for each property whose connection has postings waiting for a
person that were not mailed yet, or that changed since they were mailed (a retry that failed
again, a reversal that stopped after waiting), one message to the property's managers (the
addresses its Batch Deposit Reports go to) listing each with the console's two sentences
(what happened, what to do) and its page. A posting is mailed once per change: the mark
(``Posting.attention_mailed_at``) is the moment its state was read, written after the mail
server accepted the message, so a posting changed after that is mailed again. A connection
paused because the accounting system refused its login (every posting waits, none needs
attention on its own) is said first, once per pause (``Connection.pause_mailed_at``); so are
resyncs that have failed for ``SYNC_FAILURE_MAIL_MINUTES`` (60) with none succeeding, once
per such streak (``Connection.sync_failure_mailed_since``: its first failed run's start).
Until one succeeds, what changed in the accounting system (payment blocks included) does
not reach the platform.

At least once, as the reports: a mail server that fails leaves nothing marked (the next run
sends it); a worker stopped between the send and the mark mails those postings again. A
property without manager emails is skipped, saying so in the log (its postings stay in the
dashboard and the banner). Nothing here changes a posting's state or sends anything to the
accounting system.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core import mail
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from integrations.conf import get_setting
from integrations.logging import mask
from integrations.models import (
    Connection,
    Posting,
    PostingKind,
    PostingState,
    SyncKind,
    SyncRun,
    SyncStatus,
)
from integrations.reports import mail_connection

log = logging.getLogger(__name__)

WAITING_FOR_A_PERSON = (PostingState.NEEDS_ATTENTION, PostingState.UNCONFIRMED)
# Postings listed one by one in a message; the rest are counted, with the console's list.
MAX_LISTED = 50


def console_url(path: str) -> str:
    """An admin page's address for a mail: ``CONSOLE_URL`` (the site's address, e.g.
    https://platform.example.com) joined to ``path``; the path alone when it is not set."""
    base = str(get_setting("CONSOLE_URL") or "").rstrip("/")
    return f"{base}{path}"


def _to_mail():
    """Postings waiting for a person that were never mailed, or changed since."""
    return Posting.objects.filter(state__in=WAITING_FOR_A_PERSON).filter(
        Q(attention_mailed_at__isnull=True) | Q(updated_at__gt=F("attention_mailed_at"))
    )


@dataclass
class AttentionMail:
    property_name: str
    system_name: str
    recipients: list[str]
    items: list[str] = field(default_factory=list)
    more: int = 0
    earlier: int = 0  # mailed before, still waiting, unchanged
    lists: list[str] = field(default_factory=list)  # the console's lists, one per state
    paused: str = ""  # the connection's pause, when it is to be said
    sync_failing: str = ""  # its resyncs failing, when it is to be said

    @property
    def subject(self) -> str:
        n = len(self.items) + self.more
        postings = "posting" if n == 1 else "postings"
        wait = "waits" if n == 1 else "wait"
        told = [f"the connection to {self.system_name} is paused"] if self.paused else []
        if self.sync_failing:
            told.append(f"resyncs from {self.system_name} are failing")
        if n:
            told.append(f"{n} {postings} to {self.system_name} {wait} for a person")
        return f"{self.property_name}: " + ", and ".join(told)

    def body(self) -> str:
        n = len(self.items) + self.more
        lines = [self.paused, ""] if self.paused else []
        lines += [self.sync_failing, ""] if self.sync_failing else []
        if not n:
            return "\n".join(lines)
        lines += [
            f"The integration with {self.system_name} could not finish "
            f"{'this posting' if n == 1 else f'these {n} postings'} by itself. Nothing more "
            f"is sent for {'it' if n == 1 else 'them'} until a person acts in the console.",
            "",
        ]
        for number, item in enumerate(self.items, 1):
            lines += [f"{number}. {item}", ""]
        if self.more:
            lines += [f"... and {self.more} more, in the console's list.", ""]
        if self.earlier:
            lines += [
                f"Still waiting from earlier mails: {self.earlier} (unchanged since).",
                "",
            ]
        lines += ["The console's lists for this property:", *self.lists]
        return "\n".join(lines) + "\n"


def _item(posting: Posting, provider) -> str:
    payment = posting.payment
    prop = payment.batch.property
    taken = payment.accepted_at.astimezone(prop.tz).strftime("%m/%d/%Y %H:%M")
    if posting.kind == PostingKind.REVERSAL:
        what = (
            f"{posting.reversal.get_kind_display()} {posting.reversal.short_id} of "
            f"-{posting.reversal.amount} (payment {payment.short_id})"
        )
    else:
        what = f"Payment {payment.short_id} of {payment.amount} by {payment.get_method_display()}"
    try:
        lease = provider.lease_reference(payment.lease) or str(payment.lease.unit)
        said = provider.explain(posting)
        advice = f"What happened: {said.what_happened}\n   What to do: {said.what_to_do}"
    except Exception as err:  # noqa: BLE001  (a provider's bug must not stop the mail)
        lease = str(payment.lease.unit)
        advice = f"(the console's advice could not be built: {type(err).__name__})"
    page = console_url(reverse("admin:integrations_posting_change", args=[posting.pk]))
    return (
        f"{what}, lease {lease}, taken {taken} (property time): "
        f"{posting.get_state_display().lower()}.\n   {mask(advice)}\n   {page}"
    )


def _pause_to_mail(connection) -> bool:
    return connection.paused_at is not None and (
        connection.pause_mailed_at is None or connection.pause_mailed_at < connection.paused_at
    )


def _paused(connection, system: str) -> str:
    since = connection.paused_at.astimezone(connection.property.tz).strftime("%m/%d/%Y %H:%M")
    page = console_url(reverse("admin:integrations_connection_change", args=[connection.pk]))
    return (
        f"The connection to {system} is paused since {since} (property time), its login "
        f"refused: {mask(connection.paused_reason)[:300].rstrip('.')}. Nothing is sent to "
        f"{system} until a connection test passes; the postings wait, and none is lost. Fix "
        f"the login on the connection's page, then run 'Test connection': what waited is "
        f"sent then.\n   {page}"
    )


# The resyncs whose failures are said: the scheduled ones (and their "sync now" twins).
RESYNCS = (SyncKind.DELTA, SyncKind.FULL)


@dataclass
class FailingSince:
    since: SyncRun  # the streak's first failed run
    last: SyncRun  # its last
    runs: int


def sync_failing(connection, now) -> FailingSince | None:
    """The connection's resyncs failing for ``SYNC_FAILURE_MAIL_MINUTES`` or longer, none
    succeeding since (a partial run counts as one that succeeded: it read eSite); None when
    the last one did not fail or the streak is younger."""
    finished = SyncRun.objects.filter(
        connection=connection, kind__in=RESYNCS, finished_at__isnull=False
    ).only("pk", "status", "started_at", "message")  # not a full resync's lists of changes
    last = finished.order_by("-started_at").first()
    if last is None or last.status != SyncStatus.FAILED:
        return None
    good = finished.exclude(status=SyncStatus.FAILED).order_by("-started_at").first()
    failed = finished.filter(status=SyncStatus.FAILED)
    if good is not None:
        failed = failed.filter(started_at__gt=good.started_at)
    first = failed.order_by("started_at").first()
    minutes = float(get_setting("SYNC_FAILURE_MAIL_MINUTES"))
    if (now - first.started_at).total_seconds() < minutes * 60:
        return None
    return FailingSince(first, last, failed.count())


def _sync_failure_to_mail(connection, failing: FailingSince | None) -> bool:
    return failing is not None and (
        connection.sync_failure_mailed_since is None
        or connection.sync_failure_mailed_since < failing.since.started_at
    )


def _sync_failing(connection, failing: FailingSince, system: str) -> str:
    tz = connection.property.tz
    since = failing.since.started_at.astimezone(tz).strftime("%m/%d/%Y %H:%M")
    page = console_url(reverse("admin:integrations_syncrun_change", args=[failing.last.pk]))
    said = mask(failing.last.message)[:300].strip().rstrip(".") or "no message"
    return (
        f"The resyncs from {system} have failed since {since} (property time), "
        f"{failing.runs} in a row; the last said: {said}. Until one succeeds, what changes in "
        f"{system} does not reach the platform: a lease blocked in {system} can still be paid "
        f"online, and a new lease is not imported. Look at the connection's sync runs, run "
        f"'Test connection', and if {system} itself is down, ask its support. Payments are "
        f"sent as usual meanwhile (while {system} is down they wait and are retried).\n"
        f"   {page}"
    )


def build_mail(
    connection, postings: list[Posting], earlier: int, failing: FailingSince | None = None
) -> AttentionMail:
    from integrations.admin.dashboard import postings_url

    provider = connection.get_provider()
    prop = connection.property
    message = AttentionMail(
        property_name=prop.name,
        system_name=provider.system_name,
        recipients=prop.manager_email_list,
        earlier=earlier,
        paused=_paused(connection, provider.system_name) if _pause_to_mail(connection) else "",
    )
    if _sync_failure_to_mail(connection, failing):
        message.sync_failing = _sync_failing(connection, failing, provider.system_name)
    for state in WAITING_FOR_A_PERSON:
        url = postings_url(connection__id__exact=connection.pk, state__exact=state)
        message.lists.append(f"   {state.label.split(':')[0].lower()}: {console_url(url)}")
    for posting in postings[:MAX_LISTED]:
        message.items.append(_item(posting, provider))
    message.more = max(len(postings) - MAX_LISTED, 0)
    return message


def attention_mail() -> int:
    """Mail each property's managers the postings newly waiting for a person, and a pause not
    told yet (the schedule's task). Returns how many of those (postings and pauses) were
    mailed. Never raises for one property's failure."""
    mailed = 0
    waiting = set(_to_mail().order_by().values_list("connection_id", flat=True).distinct())
    paused = Connection.objects.filter(paused_at__isnull=False).filter(
        Q(pause_mailed_at__isnull=True) | Q(pause_mailed_at__lt=F("paused_at"))
    )
    # Resyncs failing: looked at for every connection not paused (a refused login is said as
    # the pause), a few reads each.
    resyncing = set(Connection.objects.filter(paused_at__isnull=True).values_list("pk", flat=True))
    everyone = waiting | set(paused.values_list("pk", flat=True)) | resyncing
    for connection_id in sorted(everyone):
        try:
            mailed += _mail_connection(connection_id)
        except Exception as err:  # noqa: BLE001  (the next run tries again)
            log.warning(
                "connection %s: the mail of postings waiting for a person was not sent (%s); "
                "the next run tries again",
                connection_id,
                mask(f"{type(err).__name__}: {err}")[:500],
            )
    return mailed


def _mail_connection(connection_id: int) -> int:
    read_at = timezone.now()
    connection = Connection.objects.select_related("property").get(pk=connection_id)
    postings = list(
        _to_mail()
        .filter(connection_id=connection_id)
        .select_related("payment__batch__property", "payment__lease__unit__building", "reversal")
        .order_by("created_at")
    )
    for posting in postings:
        posting.connection = connection
    pause = _pause_to_mail(connection)
    failing = None if connection.paused_at else sync_failing(connection, read_at)
    told_sync = _sync_failure_to_mail(connection, failing)
    if not postings and not pause and not told_sync:
        return 0
    prop = connection.property
    if not prop.manager_email_list:
        log.warning(
            "property %s: %s posting(s) wait for a person%s, and the property has no manager "
            "emails to tell: add them (the dashboard shows them meanwhile)",
            prop.code,
            len(postings),
            (" and its connection is paused" if pause else "")
            + (" and its resyncs are failing" if told_sync else ""),
        )
        return 0
    earlier = (
        Posting.objects.filter(connection_id=connection_id, state__in=WAITING_FOR_A_PERSON)
        .exclude(pk__in=[p.pk for p in postings])
        .count()
    )
    message = build_mail(connection, postings, earlier, failing)
    mail_connection().send_messages(
        [mail.EmailMessage(subject=message.subject, body=message.body(), to=message.recipients)]
    )
    # Marked as read before the send: a posting that changed since is newer than the mail.
    Posting.objects.filter(pk__in=[p.pk for p in postings]).update(attention_mailed_at=read_at)
    if pause:
        Connection.objects.filter(pk=connection.pk, paused_at=connection.paused_at).update(
            pause_mailed_at=read_at
        )
    if told_sync:
        Connection.objects.filter(pk=connection.pk).update(
            sync_failure_mailed_since=failing.since.started_at
        )
    log.info(
        "property %s: %s posting(s) waiting for a person%s mailed to %s",
        prop.code,
        len(postings),
        (" and the connection's pause" if pause else "")
        + (" and its failing resyncs" if told_sync else ""),
        ", ".join(message.recipients),
    )
    return len(postings) + int(pause) + int(told_sync)
