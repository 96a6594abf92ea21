"""Run the web server, a django-q2 worker and the sandbox on the demo's state (``make serve``).

Examples::

    make demo && make serve       # then open http://127.0.0.1:8000/admin/
    make serve PORT=8001          # another port for the web server
    .venv/bin/python manage.py serve_demo --web 127.0.0.1:8000

Stops all three on Ctrl-C. DEBUG stays as the environment says (off by default), so the
portal shows its own error pages as in production; ``runserver --insecure`` serves the static
files, which runserver otherwise serves only with DEBUG on.
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError

from integrations.models import Connection
from integrations_amsi import demo
from integrations_amsi.provider import AmsiProvider


class Command(BaseCommand):
    help = (
        "Serve the demo: web server, django-q2 worker and AMSI sandbox on the demo's state "
        "(settings.VAR_DIR, var/ by default)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--web",
            default="127.0.0.1:8000",
            help="HOST:PORT for the web server (default 127.0.0.1:8000; make serve PORT=N)",
        )

    def handle(self, *args, **options):
        if not demo.sandbox_state().exists():
            raise CommandError(
                f"no demo state in {demo.shown(demo.demo_dir())}/ (no sandbox books): "
                "run `make demo` first"
            )
        connection = Connection.objects.filter(provider=AmsiProvider.id).first()
        port = urlparse(connection.settings["url"]).port if connection else 8089
        procs = []
        demo.stop_children_on_sigterm()
        try:
            procs.append(demo.start_sandbox(port, seed=False))
            procs.append(demo.start_worker())
            procs.append(demo._manage("runserver", options["web"], "--noreload", "--insecure"))
            self.stdout.write(self.style.SUCCESS("Serving the demo (Ctrl-C stops everything):"))
            self.stdout.write(
                f"  admin   http://{options['web']}/admin/  "
                f"({demo.ADMIN_USER} / {demo.ADMIN_PASSWORD})"
            )
            self.stdout.write(
                f"  portal  http://{options['web']}/  as a resident, password "
                f"{demo.RESIDENT_PASSWORD}:"
            )
            for login, full, unit in demo.portal_logins():
                self.stdout.write(f"          {login}  ({full}, {unit})")
            self.stdout.write(
                f"  eSite   http://127.0.0.1:{port}/  (cash batches, external deposits)"
            )
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            raise CommandError(f"a demo process exited; see {demo.shown(demo.demo_dir())}/*.log")
        except KeyboardInterrupt:
            pass
        finally:
            self.stdout.write("stopping the web server, the worker and the sandbox ...")
            started = time.monotonic()
            demo.stop(*reversed(procs))
            self.stdout.write(f"stopped ({time.monotonic() - started:.1f} s)")
