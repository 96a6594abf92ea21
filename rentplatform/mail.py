"""Django's file e-mail backend with file names that are never reused.

Django's own names a file ``<date>-<time to the second>-<id(backend)>.log``. A connection is
made per message (the report task, ``send_mail``); once freed, the next one is often built at
the same address, so two messages sent in the same second went to one file (the demo once
printed "emailed 4 of 4 reports ... 3 message files"). Here the process id and a random part
are in the name too (tests/rentplatform/test_mail_files.py).
"""

from __future__ import annotations

import datetime
import os
import uuid

from django.core.mail.backends import filebased


class FileEmailBackend(filebased.EmailBackend):
    def _get_filename(self):
        if self._fname is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            name = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:12]}.log"
            self._fname = os.path.join(self.file_path, name)
        return self._fname
