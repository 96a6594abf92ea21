"""django-q2 Schedule rows, created or updated idempotently by name."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django_q.models import Schedule

from integrations.conf import get_setting
from integrations.reports import report_setting


def wanted() -> list[dict]:
    now = timezone.now()
    nightly = now.replace(
        hour=int(get_setting("FULL_SYNC_HOUR_UTC")), minute=0, second=0, microsecond=0
    )
    if nightly <= now:
        nightly += dt.timedelta(days=1)
    return [
        {
            "name": "integrations.retry_sweep",
            "func": "integrations.tasks.retry_sweep",
            "minutes": int(get_setting("RETRY_SWEEP_MINUTES")),
        },
        {
            "name": "integrations.delta_sync",
            "func": "integrations.tasks.delta_sync_all",
            "minutes": int(get_setting("DELTA_SYNC_MINUTES")),
        },
        {
            "name": "integrations.close_batches",
            "func": "integrations.tasks.close_batches_all",
            "minutes": int(get_setting("CLOSE_BATCHES_MINUTES")),
        },
        {
            # Batch Deposit Report emails that failed or were interrupted (integrations.reports).
            "name": "integrations.report_delivery",
            "func": "integrations.reports.report_sweep",
            "minutes": int(report_setting("REPORT_SWEEP_MINUTES")),
        },
        {
            # Postings newly waiting for a person, mailed to the managers (integrations.attention).
            "name": "integrations.attention_mail",
            "func": "integrations.attention.attention_mail",
            "minutes": int(get_setting("ATTENTION_MAIL_MINUTES")),
            "off_at_zero": True,
        },
        {
            "name": "integrations.full_sync",
            "func": "integrations.tasks.full_sync_all",
            "minutes": 24 * 60,
            "next_run": nightly,
        },
    ]


def ensure_schedules() -> list[tuple[str, str]]:
    """Create missing schedules and correct changed ones; returns (name, action) pairs."""
    results = []
    for spec in wanted():
        if spec.get("off_at_zero") and spec["minutes"] <= 0:
            removed, _ = Schedule.objects.filter(name=spec["name"]).delete()
            results.append((spec["name"], "removed (0 minutes: off)" if removed else "off"))
            continue
        fields = {
            "func": spec["func"],
            "schedule_type": Schedule.MINUTES,
            "minutes": spec["minutes"],
            "repeats": -1,
        }
        existing = Schedule.objects.filter(name=spec["name"]).first()
        if existing is None:
            Schedule.objects.create(
                name=spec["name"], next_run=spec.get("next_run", timezone.now()), **fields
            )
            results.append((spec["name"], "created"))
            continue
        changed = [k for k, v in fields.items() if getattr(existing, k) != v]
        if changed:
            for k in changed:
                setattr(existing, k, fields[k])
            existing.save()
            results.append((spec["name"], "updated " + ", ".join(changed)))
        else:
            results.append((spec["name"], "unchanged"))
    return results
