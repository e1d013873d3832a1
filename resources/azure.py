"""The Azure profile's storage settings: ADLS Gen2 for the lake (Spark's ABFS driver from hadoop-azure), with
authentication by service principal (OAuth client credentials), managed identity or account key.

Only non-secret settings go into the Spark configuration that Dagster stores with every run. Secrets (the
account key, the client secret) are named by environment variable and read when the session starts
(`SparkResource.secret_hadoop_env`), so they never reach run storage, the UI, tags or logs. On Azure they
are injected into the environment from Key Vault by the platform (Databricks secret scopes, Container Apps
or AKS secrets).
"""

import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

AUTH_MODES = ("service_principal", "managed_identity", "account_key")
DFS_SUFFIX_DEFAULT = "dfs.core.windows.net"
# Spark's own redaction of configuration shown in its UI and event logs (its default misses account keys)
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|account[.]key|client[.]secret|sas"


def hadoop_version() -> str:
    """The Hadoop version bundled with the installed pyspark (hadoop-azure must match it)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("hadoop-client-api-*.jar"):
        return jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    raise RuntimeError(f"no hadoop-client-api jar under {jars}: cannot pick the matching hadoop-azure (pyspark {version('pyspark')})")


def hadoop_azure_package() -> str:
    """Maven coordinates of the ABFS driver matching Spark's Hadoop."""
    return f"org.apache.hadoop:hadoop-azure:{hadoop_version()}"


@dataclass(frozen=True)
class AdlsSettings:
    """Where the lake lives on ADLS Gen2 and how Spark authenticates (secrets only by variable name)."""

    account: str
    auth: str
    suffix: str = DFS_SUFFIX_DEFAULT
    tenant_id: str = ""
    client_id: str = ""

    @classmethod
    def from_env(cls) -> "AdlsSettings":
        """AZURE_STORAGE_ACCOUNT, AZURE_AUTH (service_principal | managed_identity | account_key), AZURE_TENANT_ID,
        AZURE_CLIENT_ID, AZURE_DFS_SUFFIX. The secrets AZURE_CLIENT_SECRET / AZURE_STORAGE_KEY are read at session start."""
        settings = cls(
            account=os.getenv("AZURE_STORAGE_ACCOUNT", ""),
            auth=os.getenv("AZURE_AUTH", "service_principal"),
            suffix=os.getenv("AZURE_DFS_SUFFIX", DFS_SUFFIX_DEFAULT),
            tenant_id=os.getenv("AZURE_TENANT_ID", ""),
            client_id=os.getenv("AZURE_CLIENT_ID", ""),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if not self.account:
            problems.append("AZURE_STORAGE_ACCOUNT (the ADLS Gen2 account) is not set")
        if self.auth not in AUTH_MODES:
            problems.append(f"AZURE_AUTH={self.auth!r} is not one of {', '.join(AUTH_MODES)}")
        if self.auth == "service_principal" and not (self.tenant_id and self.client_id):
            problems.append("service_principal needs AZURE_TENANT_ID and AZURE_CLIENT_ID (and AZURE_CLIENT_SECRET)")
        if problems:
            raise ValueError("Azure profile: " + "; ".join(problems))

    @property
    def host(self) -> str:
        return f"{self.account}.{self.suffix}"

    def hadoop_conf(self) -> dict[str, str]:
        """Non-secret `fs.azure.*` settings for this account (to prefix with spark.hadoop.)."""
        h = self.host
        if self.auth == "account_key":
            return {f"fs.azure.account.auth.type.{h}": "SharedKey"}
        conf = {f"fs.azure.account.auth.type.{h}": "OAuth"}
        if self.auth == "service_principal":
            conf.update({
                f"fs.azure.account.oauth.provider.type.{h}": "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider",
                f"fs.azure.account.oauth2.client.id.{h}": self.client_id,
                f"fs.azure.account.oauth2.client.endpoint.{h}": f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/token",
            })
        else:  # managed identity: the VM's, AKS pod's or Databricks cluster's identity
            conf[f"fs.azure.account.oauth.provider.type.{h}"] = "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider"
            if self.tenant_id:
                conf[f"fs.azure.account.oauth2.msi.tenant.{h}"] = self.tenant_id
            if self.client_id:  # a user-assigned identity
                conf[f"fs.azure.account.oauth2.client.id.{h}"] = self.client_id
        return conf

    def secret_env(self) -> dict[str, str]:
        """Hadoop setting -> the environment variable holding its secret value (read at session start)."""
        if self.auth == "account_key":
            return {f"fs.azure.account.key.{self.host}": "AZURE_STORAGE_KEY"}
        if self.auth == "service_principal":
            return {f"fs.azure.account.oauth2.client.secret.{self.host}": "AZURE_CLIENT_SECRET"}
        return {}

    def spark_conf(self) -> dict[str, str]:
        return {**{f"spark.hadoop.{k}": v for k, v in self.hadoop_conf().items()}, "spark.redaction.regex": REDACTION_REGEX}
