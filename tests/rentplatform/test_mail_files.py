"""rentplatform.mail.FileEmailBackend: every message sent through its own connection gets its
own file, however quickly they follow each other."""

from __future__ import annotations

import django
from django.core import mail

from rentplatform.mail_settings import has_mailers

BACKEND = "rentplatform.mail.FileEmailBackend"


def _connection(settings, path: str):
    """A new connection of the file backend writing to ``path`` (a MAILERS alias on Django
    6.1+, ``get_connection`` before)."""
    if has_mailers(django.VERSION):
        settings.MAILERS = {"files": {"BACKEND": BACKEND, "OPTIONS": {"file_path": path}}}
        return mail.mailers["files"]
    return mail.get_connection(BACKEND, file_path=path)


def _send(settings, path: str, subject: str) -> None:
    # A connection per message, as send_mail() and the report task make: created, used, freed.
    message = mail.EmailMessage(subject, "body", "from@example.test", ["to@example.test"])
    _connection(settings, path).send_messages([message])


def test_messages_sent_in_the_same_second_get_a_file_each(tmp_path, settings):
    """Django's own names (time to the second and the backend's id()) collide when a freed
    backend's address is reused within the same second: two reports then shared a file (the
    demo once printed "4 of 4 reports ... 3 message files")."""
    for n in range(5):
        _send(settings, str(tmp_path), f"report {n}")
    files = sorted(tmp_path.glob("*.log"))
    assert len(files) == 5
    subjects = sorted(f.read_text().split("Subject: ")[1].splitlines()[0] for f in files)
    assert subjects == [f"report {n}" for n in range(5)]
