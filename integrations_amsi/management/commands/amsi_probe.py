"""Probe a live AMSI eSite before go-live: read-only, every step says what it saw.

Probes the eSite of a saved connection, or (before saving one) of the same options amsi_connect
takes, with the password from ``AMSI_PASSWORD`` or a prompt (never an argument). Only Leasing
reads are sent: nothing in the Ledger service (no AddPayment, ReturnPayment or
UpdateSettlementData). What only a real payment can confirm is listed at the end; the procedure
is docs/amsi.md, "First payment on a live eSite".

Examples::

    python manage.py amsi_probe maple                 # the saved connection of property maple
    python manage.py amsi_probe maple --json          # the same report as one JSON object

    AMSI_PASSWORD=... python manage.py amsi_probe \\
        --url https://host/AMSIWEBG003/edexweb/esite --portfolio ACME --user edex_acme \\
        --property-id 001 --merchant-id 1001          # before the connection is saved

Each step prints OK, WARN, FAIL (or SKIP when an earlier failure stops it). A FAIL exits
non-zero with one sentence naming what to fix.
"""

from __future__ import annotations

import dataclasses
import json
import zoneinfo
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.exceptions import ProviderConfigurationError
from integrations.logging import mask, register_secret
from integrations.models import Connection
from integrations_amsi.conf import (
    DEFAULT_CUTOFF,
    DEFAULT_TIMEOUT,
    AmsiSettings,
    parse_cutoff,
    settings_for,
    validate_url,
)
from integrations_amsi.management.commands._password import read_password
from integrations_amsi.probe import (
    CONFIRMED,
    DELTA_DAYS,
    EVIDENCE_DOC,
    FAIL,
    FIRST_PAYMENT_DOC,
    OK,
    WARN,
    ProbeReport,
    Step,
    probe,
)
from integrations_amsi.provider import AmsiProvider
from rentplatform.models import Property

AD_HOC = ("url", "portfolio", "user", "property_id", "merchant_id")


class Command(BaseCommand):
    help = "Probe an AMSI eSite (read-only) before go-live: login, property, merchant id, counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "property_code",
            nargs="?",
            help="the platform's property code whose AMSI connection is probed",
        )
        parser.add_argument("--url", help="eDex base URL (…/edexweb/esite): probe without saving")
        parser.add_argument("--portfolio", help="AMSI PortfolioName (with --url)")
        parser.add_argument("--user", help="eDex UserID (with --url)")
        parser.add_argument("--property-id", help='AMSI PropertyId, e.g. "001" (with --url)')
        parser.add_argument("--merchant-id", help="ClientMerchantID (with --url)")
        parser.add_argument("--time-zone", help="property time zone for the delta query's days")
        parser.add_argument("--timeout", type=float, help="seconds per SOAP operation")
        parser.add_argument(
            "--days", type=int, default=DELTA_DAYS, help="days the delta query covers (7)"
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["timeout"] is not None and not 0 < opts["timeout"] < 60:
            raise CommandError("--timeout must be between 0 and 60 seconds")
        if not 1 <= opts["days"] <= 31:
            raise CommandError("--days must be between 1 and 31")
        settings, label, tz = self._settings(opts)
        register_secret(settings.password)
        as_json = opts["json"]
        if not as_json:
            self.stdout.write(
                f"Probing AMSI for {label}: {settings.base_url}, portfolio {settings.portfolio}, "
                f"user {settings.user_id}, PropertyId {settings.property_id}, ClientMerchantID "
                f"{settings.merchant_id or '(none)'}. Read-only: no payment, return or "
                "settlement is sent."
            )
        report = probe(
            settings,
            today=timezone.now().astimezone(tz).date() if tz else timezone.localdate(),
            days=opts["days"],
            progress=None if as_json else self._line,
        )
        if as_json:
            data = report.as_dict()
            data["target"]["property"] = label
            self.stdout.write(mask(json.dumps(data, indent=2, ensure_ascii=False)))
        else:
            self._tail(report)
        if not report.ok:
            raise CommandError(f"AMSI probe of {label} failed: {report.fix}")

    # -- settings ----------------------------------------------------------------------------
    def _settings(self, opts: dict[str, Any]) -> tuple[AmsiSettings, str, Any]:
        code = opts["property_code"]
        given = [k for k in AD_HOC if opts[k]]
        tz = None
        if opts["time_zone"]:
            try:
                tz = zoneinfo.ZoneInfo(opts["time_zone"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise CommandError(f"unknown time zone {opts['time_zone']!r}") from None
        if given:
            missing = [k for k in AD_HOC if not opts[k]]
            if missing:
                names = ", ".join("--" + k.replace("_", "-") for k in missing)
                raise CommandError(f"probing without a saved connection also needs {names}")
            try:
                validate_url(opts["url"])
            except ValidationError as err:
                raise CommandError("; ".join(err.messages)) from None
            if tz is None and code:
                prop = Property.objects.filter(code=code).first()
                tz = prop.tz if prop else None
            password = self._password()
            settings = AmsiSettings(
                url=opts["url"],
                portfolio=opts["portfolio"],
                user_id=opts["user"],
                password=password,
                property_id=opts["property_id"],
                merchant_id=opts["merchant_id"],
                created_by=opts["user"],
                close_cutoff=parse_cutoff(DEFAULT_CUTOFF),
                timeout=opts["timeout"] or DEFAULT_TIMEOUT,
            )
            return settings, code or "the given settings", tz
        if not code:
            raise CommandError(
                "give a property code, or --url, --portfolio, --user, --property-id and "
                "--merchant-id to probe before saving a connection"
            )
        connection = (
            Connection.objects.select_related("property")
            .filter(property__code=code, provider=AmsiProvider.id)
            .first()
        )
        if connection is None:
            raise CommandError(
                f"property {code!r} has no AMSI connection; probe with --url, --portfolio, "
                "--user, --property-id and --merchant-id, or save one with amsi_connect"
            )
        try:
            settings = settings_for(connection)
        except ProviderConfigurationError as err:
            raise CommandError(str(err)) from None
        if opts["timeout"]:
            settings = dataclasses.replace(settings, timeout=opts["timeout"])
        if not connection.enabled:
            self.stdout.write(self.style.WARNING(f"The connection of {code} is disabled."))
        return settings, code, tz or connection.property.tz

    def _password(self) -> str:
        return read_password()

    # -- output --------------------------------------------------------------------------------
    def _line(self, step: Step) -> None:
        style = {
            OK: self.style.SUCCESS,
            WARN: self.style.WARNING,
            FAIL: self.style.ERROR,
        }.get(step.status, lambda text: text)
        text = f"{step.status:<4} {step.number}. {step.title}: {step.detail}"
        self.stdout.write(style(mask(text)))

    def _tail(self, report: ProbeReport) -> None:
        self.stdout.write("")
        self.stdout.write(f"Evidence rows ({EVIDENCE_DOC}) on this eSite:")
        for row in report.evidence:
            mark = "confirmed" if row.status == CONFIRMED else "not seen "
            self.stdout.write(mask(f"  {mark}  {row.row}: {row.seen}"))
        self.stdout.write("")
        self.stdout.write(f"Only a real payment can confirm (see {FIRST_PAYMENT_DOC}):")
        for item in report.payment_only:
            self.stdout.write(f"  - {item}")
        if report.ok:
            warned = sum(1 for s in report.steps if s.status == WARN)
            summary = "Probe OK" + (f" with {warned} warning(s): read them above" if warned else "")
            self.stdout.write(self.style.SUCCESS(summary))
