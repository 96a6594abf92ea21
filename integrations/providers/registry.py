"""An explicit provider registry, filled in each provider app's ``AppConfig.ready()``.

Import-scanning discovery is too magical (allauth's maintainers say so of their own); a provider
registers itself by its class ``id``.
"""

from __future__ import annotations

from integrations.exceptions import ProviderConfigurationError

_providers: dict[str, type] = {}


def register(cls: type) -> type:
    provider_id = getattr(cls, "id", "")
    if not provider_id:
        raise ProviderConfigurationError(f"{cls.__module__}.{cls.__name__} has no id")
    existing = _providers.get(provider_id)
    if existing is not None and existing is not cls:
        raise ProviderConfigurationError(
            f"provider id {provider_id!r} is taken by {existing.__module__}.{existing.__name__}"
        )
    _providers[provider_id] = cls
    return cls


def get(provider_id: str) -> type:
    try:
        return _providers[provider_id]
    except KeyError:
        known = ", ".join(sorted(_providers)) or "none"
        raise ProviderConfigurationError(
            f"no accounting provider {provider_id!r} is registered (known: {known})"
        ) from None


def all_providers() -> list[type]:
    return [_providers[k] for k in sorted(_providers)]


def as_choices() -> list[tuple[str, str]]:
    return [(cls.id, cls.name) for cls in all_providers()]
