"""Find out, on a live eSite, whether it refuses a repeated ClientTransactionID.

Nothing public shows what eSite does when an AddPayment repeats a ClientTransactionID, and
automatic checking of unknown outcomes is only safe where it refuses the repeat. This command
sends ONE posted payment's AddPayment again, the same document, and reports what eSite
answered. It WRITES to eSite: run it on the small test payment of docs/amsi.md, "First payment
on a live eSite", step 3, while its batch is still open.

Examples::

    python manage.py amsi_duplicate_check maple --posting 1a2b3c4d --send
    python manage.py amsi_duplicate_check maple --posting 1a2b3c4d --send --record --by "J. Doe"

Without ``--send`` it only shows what it would send. ``--record`` stores, when eSite refused
the repeat, who confirmed it, when, and the ErrorCode eSite answered (the connection's
"duplicates refused" confirmation); from then on a payment whose reply was lost is re-sent
automatically. When eSite ACCEPTED the repeat, the batch now holds the payment twice: the
command says what to do, and nothing is recorded.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.exceptions import IntegrationError
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingKind, PostingState
from integrations_amsi.conf import record_duplicates_refused
from integrations_amsi.errors import SUCCESS
from integrations_amsi.provider import AmsiProvider


class Command(BaseCommand):
    help = "Send one posted payment's AddPayment again to learn whether eSite refuses repeats."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("property_code", help="the platform's property code")
        parser.add_argument(
            "--posting", required=True, help="the posted payment's posting key (or its start)"
        )
        parser.add_argument(
            "--send", action="store_true", help="really send it (it writes to eSite)"
        )
        parser.add_argument(
            "--record",
            action="store_true",
            help="if eSite refused the repeat, record the confirmation on the connection",
        )
        parser.add_argument("--by", default="", help="who confirms (default: the OS user)")

    def handle(self, *args: Any, **opts: Any) -> None:
        connection = Connection.objects.filter(
            property__code=opts["property_code"], provider=AmsiProvider.id
        ).first()
        if connection is None:
            raise CommandError(f"property {opts['property_code']!r} has no AMSI connection")
        matches = list(
            Posting.objects.filter(
                connection=connection, kind=PostingKind.PAYMENT, key__startswith=opts["posting"]
            )[:2]
        )
        if len(matches) != 1:
            raise CommandError(
                f"{len(matches) or 'no'} payment posting(s) of {opts['property_code']} start "
                f"with {opts['posting']!r}: give more of the key (admin: Postings)"
            )
        posting = matches[0]
        if posting.state != PostingState.POSTED:
            raise CommandError(
                f"posting {posting.key} is {posting.get_state_display()}: repeat only a payment "
                "eSite already has"
            )
        provider = connection.get_provider()
        document = provider.payment_document(posting)
        batch = posting.payment.batch.batch_id
        self.stdout.write(
            f"AddPayment of posting {posting.key}: {posting.payment.amount} into batch {batch}, "
            f"ClientTransactionID {provider.transaction_id(posting)}"
        )
        if not opts["send"]:
            self.stdout.write(mask(document))
            self.stdout.write("Nothing sent: add --send to send it once more.")
            return
        try:
            reply, _text = provider.client.ledger("AddPayment", document, record=posting.key)
        except IntegrationError as err:
            raise CommandError(
                f"no answer to read ({err.message}): look in eSite whether the payment now "
                f"appears twice under External Batch {batch} (Reports > Accounting Reports > "
                "External Deposits) before trying again"
            ) from err
        if reply.ok:
            raise CommandError(
                f"eSite ACCEPTED the repeat (ErrorCode {reply.error_code or SUCCESS}): expect "
                f"{posting.payment.amount} twice under External Batch {batch}, and check it. "
                "eSite books repeats, so leave 'Duplicates refused' unticked, and have the extra "
                "entry taken out in eSite before the batch closes (how eSite lets one edit an "
                "External batch is not known): otherwise eSite's batch holds more than the total "
                "our settlement sends, and what eSite does with that is not known either."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"eSite REFUSED the repeat: ErrorCode {reply.error_code}: "
                f"{reply.error_description or '(no text)'}. Before relying on it, check that "
                f"nothing new is under External Batch {batch} and that the text speaks of a "
                "repeat, not of another fault."
            )
        )
        if not opts["record"]:
            self.stdout.write("Add --record to store this confirmation on the connection.")
            return
        who = opts["by"] or getpass.getuser()
        record_duplicates_refused(connection, who=who, code=reply.error_code)
        self.stdout.write(
            f"Recorded: duplicates refused on this eSite, confirmed by {who}. ErrorCode "
            f"{reply.error_code}, answered to a payment re-sent after a lost reply, is now read "
            "as 'already posted'. Such payments are now re-sent automatically; any other "
            "answer stops for a person."
        )
