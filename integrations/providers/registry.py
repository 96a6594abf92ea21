"""An explicit provider registry.

Import-scanning discovery is too magical (allauth's maintainers say so of their own). A provider
with an app of its own registers itself by its class ``id`` in that app's
``AppConfig.ready()`` (AMSI: ``integrations_amsi.apps``). A provider without an app, such as
the fake provider the tests and the demo use, is offered only where
``settings.INTEGRATIONS["PROVIDERS"]`` names its class by dotted path; that list is read at call
time, like every integrations setting, so production settings that leave it out never offer it.
"""

from __future__ import annotations

import functools

from django.utils.module_loading import import_string

from integrations.conf import get_setting
from integrations.exceptions import ProviderConfigurationError

_providers: dict[str, type] = {}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def _add(found: dict[str, type], cls: type) -> None:
    provider_id = getattr(cls, "id", "")
    if not provider_id:
        raise ProviderConfigurationError(f"{_name(cls)} has no id")
    existing = found.get(provider_id)
    if existing is not None and existing is not cls:
        raise ProviderConfigurationError(
            f"provider id {provider_id!r} is taken by {_name(existing)}"
        )
    found[provider_id] = cls


def register(cls: type) -> type:
    _add(_all(), cls)  # refuses an id taken by a registered or a configured provider
    _add(_providers, cls)
    return cls


@functools.cache
def _import(path: str) -> type:
    try:
        return import_string(path)
    except ImportError as err:
        raise ProviderConfigurationError(
            f"settings.INTEGRATIONS['PROVIDERS'] names {path!r}, which cannot be imported: {err}"
        ) from err


def _all() -> dict[str, type]:
    """The registered providers and those the settings name."""
    found = dict(_providers)
    for path in get_setting("PROVIDERS"):
        _add(found, _import(path))
    return found


def get(provider_id: str) -> type:
    found = _all()
    try:
        return found[provider_id]
    except KeyError:
        known = ", ".join(sorted(found)) or "none"
        raise ProviderConfigurationError(
            f"no accounting provider {provider_id!r} is registered (known: {known})"
        ) from None


def get_provider(connection):
    """The provider instance for a connection (``Connection.provider`` holds the id)."""
    return get(connection.provider)(connection)


def all_providers() -> list[type]:
    found = _all()
    return [found[k] for k in sorted(found)]


def as_choices() -> list[tuple[str, str]]:
    return [(cls.id, cls.name) for cls in all_providers()]
