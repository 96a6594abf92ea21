"""Which providers are offered: those their apps register, plus those the settings name.

The fake provider has no app: production settings leave it out, so it is never offered there;
the tests (tests/conftest.py) and the demo name it in ``INTEGRATIONS["PROVIDERS"]``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from integrations.exceptions import ProviderConfigurationError
from integrations.models import Connection
from integrations.providers import registry
from integrations.providers.fake import FakeProvider
from integrations_amsi.provider import AmsiProvider
from tests.conftest import REPO_ROOT
from tests.factories import PropertyFactory


def _without_fake(settings) -> None:
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "PROVIDERS": []}


def test_the_fake_is_offered_only_where_the_settings_name_it(settings):
    assert registry.get(FakeProvider.id) is FakeProvider  # the tests name it
    _without_fake(settings)
    assert FakeProvider.id not in dict(registry.as_choices())
    assert AmsiProvider.id in dict(registry.as_choices())  # registered by its app
    with pytest.raises(ProviderConfigurationError, match="no accounting provider 'fake'"):
        registry.get(FakeProvider.id)


def test_production_settings_do_not_offer_the_fake():
    env = {k: v for k, v in os.environ.items() if k != "INTEGRATIONS_PROVIDERS"}
    env["DJANGO_SETTINGS_MODULE"] = "rentplatform.settings"
    code = (
        "import django; django.setup(); from integrations.providers import registry; "
        "print(sorted(dict(registry.as_choices())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr([AmsiProvider.id])


def test_a_provider_path_that_does_not_import_is_named(settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "PROVIDERS": ["integrations.nope.Nope"]}
    with pytest.raises(ProviderConfigurationError, match="integrations.nope.Nope"):
        registry.as_choices()


@pytest.mark.django_db
def test_get_provider_builds_the_connections_provider():
    connection = Connection.objects.create(property=PropertyFactory(), provider=FakeProvider.id)
    provider = registry.get_provider(connection)
    assert isinstance(provider, FakeProvider) and provider.connection is connection
    assert isinstance(connection.get_provider(), FakeProvider)
