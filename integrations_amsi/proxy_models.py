"""Proxy of the generic Connection for AMSI connections: no longer used.

AMSI connections are edited in the one connection admin (integrations.admin.connections) with
the AMSI form on ``Connection`` itself. Nothing reads this proxy; it remains only while
``integrations_amsi/models.py`` imports it (its last line). To remove it: drop that import,
delete this module, and add a migration with ``migrations.DeleteModel("AmsiConnection")``.
"""

from __future__ import annotations

from django.db import models

from integrations.models import Connection


class AmsiConnectionManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(provider="amsi")


class AmsiConnection(Connection):
    objects = AmsiConnectionManager()

    class Meta:
        proxy = True
        verbose_name = "AMSI connection"

    def save(self, *args, **kwargs):
        self.provider = "amsi"
        super().save(*args, **kwargs)
