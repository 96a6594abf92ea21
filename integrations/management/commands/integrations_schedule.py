"""Create or update the integrations' django-q2 schedules (idempotent, by name).

Examples::

    python manage.py integrations_schedule
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from integrations.schedules import ensure_schedules


class Command(BaseCommand):
    help = "Create or update the integrations' scheduled jobs (retry sweep, syncs, batch closing)."

    def handle(self, *args, **options):
        for name, action in ensure_schedules():
            style = self.style.SUCCESS if action == "created" else self.style.NOTICE
            self.stdout.write(style(f"{name}: {action}"))
