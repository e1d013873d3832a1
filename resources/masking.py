"""PII masking key: the salt of the pseudonymous tokens that replace names and free text in silver."""

from __future__ import annotations

import os

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

LOCAL_DEV_SALT = "local-development-salt"


class PiiMaskingResource(ConfigurableResource):
    """Holds the masking salt; in production it is injected from Key Vault as PII_HASH_SALT."""

    salt: str = Field(description="Secret salt for PII tokens (PII_HASH_SALT).")

    def salt_value(self) -> str:
        """The salt outside a Dagster run too (inside one, `salt` is already resolved from its variable)."""
        return self.salt.get_value() if isinstance(self.salt, EnvVar) else self.salt


def masking_from_env() -> PiiMaskingResource:
    """PII_HASH_SALT through dg.EnvVar (the stored run configuration names the variable, never the salt); the
    development salt when it is unset (the local profile only: the Azure profile requires it)."""
    return PiiMaskingResource(salt=EnvVar("PII_HASH_SALT") if os.getenv("PII_HASH_SALT") else LOCAL_DEV_SALT)
