"""The eDex password for the onboarding commands: from AMSI_PASSWORD, or asked on a terminal.

Never an option on the command line (it would show in the process list and shell history).
"""

from __future__ import annotations

import getpass
import os
import sys

from django.core.management.base import CommandError

PASSWORD_ENV = "AMSI_PASSWORD"


def read_password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin or not sys.stdin.isatty():
        raise CommandError(
            f"no password: set the {PASSWORD_ENV} environment variable (stdin is not a "
            "terminal, so it cannot be prompted for)"
        )
    password = getpass.getpass("AMSI eDex password: ")
    if not password:
        raise CommandError("no password given")
    return password
