"""Connect a property to AMSI eSite (create or update it and its connection), then test it.

The password is never a command-line argument (it would land in shell history and ``ps``):
it comes from the ``AMSI_PASSWORD`` environment variable or an interactive prompt.

Examples::

    AMSI_PASSWORD=... python manage.py amsi_connect maple \\
        --url https://host/AMSIWEBG003/edexweb/esite --portfolio ACME --user edex_acme \\
        --property-id 001 --merchant-id 1001 --time-zone America/Chicago --name "Maple Court"

    python manage.py amsi_connect maple --url ... --portfolio ... --user ... \\
        --property-id 001 --merchant-id 1001          # prompts for the password

A failed test exits non-zero with the reason; the connection is still saved (marked as failing
its last test) so it can be fixed and tested again from the admin.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from integrations import services
from integrations.conf import timing_chain
from integrations.logging import register_secret
from integrations.models import Connection
from integrations_amsi.conf import parse_cutoff, validate_merchant_id, validate_url
from integrations_amsi.management.commands._password import read_password
from integrations_amsi.provider import AmsiProvider
from rentplatform.models import Property
from rentplatform.models.property import validate_time_zone


class Command(BaseCommand):
    help = "Create or update a property's AMSI connection, then test it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("property_code", help="the platform's property code (created if new)")
        parser.add_argument("--url", required=True, help="eDex base URL (…/edexweb/esite)")
        parser.add_argument("--portfolio", required=True, help="AMSI PortfolioName")
        parser.add_argument("--user", required=True, help="eDex UserID")
        parser.add_argument("--property-id", required=True, help='AMSI PropertyId, e.g. "001"')
        parser.add_argument("--merchant-id", required=True, help="ClientMerchantID")
        parser.add_argument("--time-zone", help="property time zone, e.g. America/Chicago")
        parser.add_argument("--name", help="property name (new properties: default the code)")
        parser.add_argument("--created-by", help="eDex user name batches show as Created By")
        parser.add_argument("--cutoff", help="batch close cutoff HH:MM, property time")
        parser.add_argument("--timeout", type=float, help="seconds per SOAP operation")

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
        password = self._password()
        register_secret(password)

        with transaction.atomic():
            prop, created = Property.objects.get_or_create(
                code=code,
                defaults={
                    "name": opts["name"] or code,
                    "time_zone": opts["time_zone"] or "America/New_York",
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
            connection.settings = settings
            connection.credentials = {**(connection.credentials or {}), "password": password}
            connection.save()

        verb = "Created" if new_connection else "Updated"
        self.stdout.write(
            f"{verb} the AMSI connection of {prop} (portfolio {opts['portfolio']}, user "
            f"{opts['user']}, PropertyId {opts['property_id']}, ClientMerchantID "
            f"{opts['merchant_id']}, time zone {prop.time_zone}); password stored encrypted."
        )
        self.stdout.write("Testing the connection…")
        check = services.test_connection(connection)
        if not check.ok:
            raise CommandError(f"connection test failed for {code}: {check.message}")
        self.stdout.write(self.style.SUCCESS(f"Connection OK: {check.message}"))
        self.stdout.write(f"Next: python manage.py amsi_import {code} --dry-run")

    def _password(self) -> str:
        return read_password()
