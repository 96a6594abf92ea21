"""Proxy of the generic Connection for AMSI connections (its own admin and form)."""

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
