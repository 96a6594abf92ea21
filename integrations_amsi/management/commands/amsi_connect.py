"""Connect a property to AMSI eSite (create or update it and its connection), then check it.

The password is never a command-line argument (it would land in shell history and ``ps``):
it comes from the ``AMSI_PASSWORD`` environment variable or an interactive prompt.

The check (integrations_amsi.onboarding) asks eSite, read-only: the eDex services answer (else
the HTTP status or the network reason), the login, portfolio and property are right, and the
ClientMerchantID matches what GetPropertyList shows; where eSite shows none, "Connection OK"
comes with the caveat that the merchant id was not checked. A second connection to an AMSI
property (portfolio + PropertyId) already connected is refused unless ``--reason`` says why.

Examples::

    AMSI_PASSWORD=... python manage.py amsi_connect maple \\
        --url https://host/AMSIWEBG003/edexweb/esite --portfolio ACME --user edex_acme \\
        --property-id 001 --merchant-id 1001 --time-zone America/Chicago --name "Maple Court"

    python manage.py amsi_connect maple --url ... --portfolio ... --user ... \\
        --property-id 001 --merchant-id 1001 --disabled   # prompts; nothing syncs until enabled

A failed check exits non-zero with the reason; the connection is still saved (marked as failing
its last test, and disabled when it is new) so it can be fixed and checked again.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from integrations.conf import timing_chain
from integrations.logging import register_secret
from integrations.models import Connection
from integrations_amsi import onboarding
from integrations_amsi.conf import (
    DEFAULT_CUTOFF,
    DEFAULT_TIMEOUT,
    parse_cutoff,
    settings_for,
    validate_merchant_id,
    validate_url,
)
from integrations_amsi.demo import manage_command
from integrations_amsi.management.commands._password import PASSWORD_ENV, read_password
from integrations_amsi.provider import AmsiProvider
from rentplatform.models import Property
from rentplatform.models.property import validate_time_zone

NEW_PROPERTY_TIME_ZONE = "America/New_York"


class Command(BaseCommand):
    help = (
        "Create or update a property's AMSI connection, then check it against eSite "
        "(read-only). The eDex password is read from the environment variable "
        f"{PASSWORD_ENV}, or prompted for on a terminal; it is never an option."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("property_code", help="the platform's property code (created if new)")
        parser.add_argument("--url", required=True, help="eDex base URL (…/edexweb/esite)")
        parser.add_argument("--portfolio", required=True, help="AMSI PortfolioName")
        parser.add_argument("--user", required=True, help="eDex UserID")
        parser.add_argument("--property-id", required=True, help='AMSI PropertyId, e.g. "001"')
        parser.add_argument(
            "--merchant-id", required=True, help="ClientMerchantID, a whole number, e.g. 1001"
        )
        parser.add_argument(
            "--time-zone",
            help="property time zone, e.g. America/Chicago (default: a new property "
            f"{NEW_PROPERTY_TIME_ZONE}; an existing one keeps its own)",
        )
        parser.add_argument(
            "--name", help="property name (default: a new property is named by its code)"
        )
        parser.add_argument(
            "--created-by",
            help="eDex user name batches show as Created By (default: the --user UserID)",
        )
        parser.add_argument(
            "--cutoff",
            help=f"batch close cutoff HH:MM, property time (default {DEFAULT_CUTOFF})",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            help=f"seconds per SOAP operation (default {DEFAULT_TIMEOUT:g})",
        )
        parser.add_argument(
            "--disabled",
            action="store_true",
            help="save the connection disabled: nothing syncs or posts until a person enables "
            "it (admin: the connection's page, tick Enabled) (default: a new connection is "
            "enabled once its check passes; an existing one keeps its state)",
        )
        parser.add_argument(
            "--reason",
            metavar="TEXT",
            help="why a second connection to an AMSI property that is already connected "
            "(portfolio + PropertyId) is wanted; without it, that is refused (default: none)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        code = opts["property_code"]
        try:
            validate_url(opts["url"])
            validate_merchant_id(opts["merchant_id"])
            if opts["time_zone"]:
                validate_time_zone(opts["time_zone"])
            cutoff = parse_cutoff(opts["cutoff"]).strftime("%H:%M") if opts["cutoff"] else None
        except ValidationError as err:
            raise CommandError("; ".join(err.messages)) from None
        if opts["timeout"] is not None:
            if not opts["timeout"] > 0:  # also NaN
                raise CommandError("--timeout must be a positive number of seconds")
            problem = timing_chain().operation_timeout_problem(opts["timeout"])
            if problem:
                raise CommandError(f"--timeout: {problem}")
        others = onboarding.same_amsi_property(
            opts["portfolio"],
            opts["property_id"],
            connection=Connection.objects.filter(property__code=code).first(),
        )
        reason = (opts["reason"] or "").strip()
        if others and not reason:
            raise CommandError(
                onboarding.duplicate_message(others, opts["portfolio"], opts["property_id"])
                + " with --reason TEXT"
            )
        password = self._password()
        register_secret(password)

        with transaction.atomic():
            prop, created = Property.objects.get_or_create(
                code=code,
                defaults={
                    "name": opts["name"] or code,
                    "time_zone": opts["time_zone"] or NEW_PROPERTY_TIME_ZONE,
                },
            )
            if not created:
                changed = []
                if opts["name"] and prop.name != opts["name"]:
                    prop.name = opts["name"]
                    changed.append("name")
                if opts["time_zone"] and prop.time_zone != opts["time_zone"]:
                    prop.time_zone = opts["time_zone"]
                    changed.append("time_zone")
                if changed:
                    prop.save(update_fields=changed)
            connection = Connection.objects.filter(property=prop).first()
            if connection is not None and connection.provider != AmsiProvider.id:
                raise CommandError(
                    f"property {code} is connected to provider {connection.provider!r}, not AMSI; "
                    "remove that connection first"
                )
            new_connection = connection is None
            connection = connection or Connection(property=prop, provider=AmsiProvider.id)
            if opts["disabled"] or new_connection:
                # A new connection stays disabled until its check passed: nothing may sync it
                # meanwhile.
                connection.enabled = False
            settings = dict(connection.settings or {})
            settings.update(
                url=opts["url"],
                portfolio=opts["portfolio"],
                user_id=opts["user"],
                property_id=opts["property_id"],
                merchant_id=opts["merchant_id"],
            )
            for key, value in (
                ("created_by", opts["created_by"]),
                ("close_cutoff", cutoff),
                ("timeout", opts["timeout"]),
            ):
                if value is not None:
                    settings[key] = value
            if others:
                settings["shared_property_reason"] = reason
            elif reason:
                settings["shared_property_reason"] = reason  # a reason given anyway is kept
            connection.settings = settings
            connection.credentials = {**(connection.credentials or {}), "password": password}
            connection.save()

        verb = "Created" if new_connection else "Updated"
        self.stdout.write(
            f"{verb} the AMSI connection of {prop} (portfolio {opts['portfolio']}, "
            f"user {opts['user']}, PropertyId {opts['property_id']}, ClientMerchantID "
            f"{opts['merchant_id']}, time zone {prop.time_zone}); password stored encrypted."
        )
        if others:
            self.stdout.write(
                self.style.WARNING(
                    f"A second connection to AMSI property {opts['property_id']} of "
                    f"{opts['portfolio']} (also: {', '.join(str(c.property) for c in others)}); "
                    f"reason recorded: {reason}"
                )
            )
        self.stdout.write("Checking it against eSite (read-only)…")
        check = onboarding.check_settings(settings_for(connection))
        onboarding.record(connection, check)
        if not check.ok:
            state = "enabled" if connection.enabled else "disabled"
            raise CommandError(
                f"connection check failed for {code} (saved {state}, marked as failing): "
                f"{check.message}"
            )
        if new_connection and not opts["disabled"]:
            connection.enabled = True
            connection.save(update_fields=["enabled", "updated_at"])
        self.stdout.write(self.style.SUCCESS(f"Connection OK: {check.message}"))
        if check.caveat:
            self.stdout.write(self.style.WARNING(f"Caveat: {check.caveat}"))
        if not connection.enabled:
            self.stdout.write(
                "The connection is disabled: nothing syncs or posts until it is enabled "
                "(admin: the connection's page, tick Enabled)."
            )
        manage = manage_command()
        self.stdout.write(
            f"Next: {manage} amsi_import {code} --dry-run, then {manage} amsi_import {code}"
        )

    def _password(self) -> str:
        return read_password()
