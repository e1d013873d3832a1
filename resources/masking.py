"""PII masking: the salt of the pseudonymous tokens that replace names and free text in silver, and the
masked excerpt that error messages show of input they could not parse."""

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


EXCERPT_CHARS = 40


def masked_excerpt(text: str | bytes | None, limit: int = EXCERPT_CHARS) -> str:
    """A short, masked excerpt of input that could not be parsed, for error messages and check metadata.

    Letters become x / X and digits 9, punctuation and spacing stay: the shape of a broken record is
    visible (where the quote or separator went wrong) while a name, account or secret in it is not.
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    head = text[:limit]
    masked = "".join("9" if c.isdigit() else ("X" if c.isupper() else "x") if c.isalpha() else c if c.isprintable() else "?" for c in head)
    return masked + ("…" if len(text) > limit else "")
