"""The platform's settings with django-q2 options changed for an experiment (``--q-option``).

``BENCH_Q_CLUSTER`` holds JSON merged into ``Q_CLUSTER``, e.g. ``{"save_limit": -1}``: how a
bench measures what a settings change would do, without editing rentplatform/settings.py. Used
only when a bench is given ``--q-option``; the cluster it starts reads the same variable.
"""

import json
import os

from rentplatform.settings import *  # noqa: F403
from rentplatform.settings import Q_CLUSTER as _PLATFORM_Q_CLUSTER

Q_CLUSTER = {**_PLATFORM_Q_CLUSTER, **json.loads(os.environ.get("BENCH_Q_CLUSTER") or "{}")}
