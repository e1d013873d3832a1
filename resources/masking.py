"""PII masking key: the salt of the pseudonymous tokens that replace names and free text in silver."""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

LOCAL_DEV_SALT = "local-development-salt"


class PiiMaskingResource(ConfigurableResource):
    """Holds the masking salt; in production it is injected from Key Vault as PII_HASH_SALT."""

    salt: str = Field(description="Secret salt for PII tokens (PII_HASH_SALT).")


def masking_from_env() -> PiiMaskingResource:
    return PiiMaskingResource(salt=os.getenv("PII_HASH_SALT", LOCAL_DEV_SALT))
