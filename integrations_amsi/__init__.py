"""The AMSI eSite provider (``provider.AmsiProvider``) and its sandbox."""

# The provider's id, typed once: ``AmsiProvider.id`` is this. The modules the provider imports
# (errors, client, identifiers) cannot import the provider class without a cycle, so they name
# the id from here; everything else uses ``AmsiProvider.id``.
PROVIDER_ID = "amsi"
