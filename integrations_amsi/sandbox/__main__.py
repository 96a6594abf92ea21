"""``python -m integrations_amsi.sandbox``: the sandbox without Django (see cli.py)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
