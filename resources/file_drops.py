"""File drops: where inbound files arrive from other systems and where outbound exports go.

One small interface, two implementations, chosen once from the environment (`file_drops_from_env`):
- `LocalFileDrops`: a folder (FILE_DROPS_ROOT, default <LAKE_ROOT>/drops).
- `BlobFileDrops`: a container of an Azure Storage account (optionally under a prefix), through
  dagster-azure's `AzureBlobStorageResource`; the same code runs against Azurite in the tests.
- `Adls2FileDrops`: a file system of an ADLS Gen2 account through its DFS endpoint, through dagster-azure's
  `ADLS2Resource` (FILE_DROPS_FILESYSTEM). Azurite has no DFS endpoint, so this one is not exercised
  against a server here; the Blob endpoint of the same ADLS Gen2 account serves the same files.

Names are relative, '/'-separated (`system_of_record/2026-04-01.csv`, `exports/risk_scores_gold`).
Assets only see `FileDropResource`: list_names / exists / read_bytes / write_bytes for files, and
`delta_uri` + `delta_storage_options` to hand a Delta table location to delta-rs. `uri` is for
metadata and messages: it never contains a key or a SAS token; `delta_storage_options` does, so it
is a `StorageOptions` dict whose repr masks them, and must never be logged or stored.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from azure.storage.blob import ContainerClient
from dagster import ConfigurableResource, EnvVar
from dagster_azure.adls2 import ADLS2DefaultAzureCredential, ADLS2Key, ADLS2Resource, ADLS2SASToken
from dagster_azure.blob import (
    AzureBlobStorageDefaultCredential,
    AzureBlobStorageKeyCredential,
    AzureBlobStorageResource,
    AzureBlobStorageSASTokenCredential,
)
from pydantic import Field, field_validator

from resources.lake import default_lake_root

# Environment of file_drops_from_env (secrets are read through dagster's EnvVar at run time only)
ENV_ROOT = "FILE_DROPS_ROOT"                # local folder (default <LAKE_ROOT>/drops)
ENV_ACCOUNT_URL = "AZURE_BLOB_ACCOUNT_URL"  # https://<account>.blob.core.windows.net, or Azurite's http://127.0.0.1:10000/devstoreaccount1
ENV_ACCOUNT = "AZURE_STORAGE_ACCOUNT"       # the account name, when the URL is the public cloud's default
ENV_KEY = "AZURE_STORAGE_KEY"               # account key (secret)
ENV_SAS = "AZURE_STORAGE_SAS_TOKEN"         # SAS token (secret), when there is no key
ENV_AUTH = "AZURE_AUTH"                     # shared with the lake: service_principal / managed_identity -> no key, no SAS
IDENTITY_AUTH = ("service_principal", "managed_identity")
ENV_CONTAINER = "FILE_DROPS_CONTAINER"      # default "drops"
ENV_PREFIX = "FILE_DROPS_PREFIX"            # optional folder inside the container
ENV_FILESYSTEM = "FILE_DROPS_FILESYSTEM"    # an ADLS Gen2 file system: use the DFS endpoint (ADLS2Resource) instead of Blob
ENV_DFS_SUFFIX = "AZURE_DFS_SUFFIX"         # shared with the lake (default core.windows.net endpoints)
DEFAULT_CONTAINER = "drops"
SECRET_OPTIONS = ("account_key", "sas_token", "client_secret", "bearer_token")


class StorageOptions(dict):
    """delta-rs storage options; the repr masks secrets so an accidental log line does not leak them."""

    def __repr__(self) -> str:
        return repr({k: ("***" if k in SECRET_OPTIONS else v) for k, v in self.items()})

    __str__ = __repr__


def clean_name(name: str) -> str:
    """A relative '/'-separated name inside the drop; refuses absolute names and '..'."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise ValueError(f"File drop names are relative and stay inside the drop: {name!r}")
    return "/".join(parts)


class FileDropResource(ConfigurableResource):
    """The file-drop interface assets depend on; see LocalFileDrops and BlobFileDrops."""

    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the files in folder `prefix` and its subfolders (all files for ""), sorted."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes; FileNotFoundError (naming where it looked) when it is not there."""
        raise NotImplementedError

    def write_bytes(self, name: str, data: bytes) -> None:
        """Create or replace the file (readers see the old or the new content, never a part)."""
        raise NotImplementedError

    def uri(self, name: str = "") -> str:
        """Where `name` is, for messages and metadata: never contains a secret."""
        raise NotImplementedError

    def delta_uri(self, name: str) -> str:
        """The location of a Delta table at `name`, as delta-rs takes it (a local path or az://)."""
        raise NotImplementedError

    def delta_storage_options(self) -> StorageOptions:
        """delta-rs storage options for `delta_uri` (may hold secrets: pass them on, never log them)."""
        raise NotImplementedError


class LocalFileDrops(FileDropResource):
    """File drops in a local folder (the local profile and tests)."""

    root: str = Field(description="The drop folder (absolute or relative to the working directory).")

    @field_validator("root")
    @classmethod
    def _local_folder(cls, value: str) -> str:
        if "://" in value and not value.startswith("file://"):
            raise ValueError(
                f"LocalFileDrops needs a local folder, not {value!r}: set {ENV_ROOT} to a folder, or {ENV_ACCOUNT_URL} / "
                f"{ENV_ACCOUNT} for Azure Blob Storage"
            )
        return value

    def _path(self, name: str) -> Path:
        return Path(self.root.removeprefix("file://")).resolve() / clean_name(name)

    def list_names(self, prefix: str = "") -> list[str]:
        base = Path(self.root.removeprefix("file://")).resolve()
        start = self._path(prefix)
        if not start.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in start.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def read_bytes(self, name: str) -> bytes:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"No file {clean_name(name)!r} in the file drop: expected {path}")
        return path.read_bytes()

    def write_bytes(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def uri(self, name: str = "") -> str:
        return str(self._path(name))

    def delta_uri(self, name: str) -> str:
        return str(self._path(name))

    def delta_storage_options(self) -> StorageOptions:
        return StorageOptions()


class BlobFileDrops(FileDropResource):
    """File drops in an Azure Blob Storage container, through dagster-azure's AzureBlobStorageResource."""

    blob: AzureBlobStorageResource = Field(description="The storage account (URL and credential).")
    container: str = Field(default=DEFAULT_CONTAINER, description="The container holding the drops and exports.")
    prefix: str = Field(default="", description="Optional folder inside the container.")

    def _blob_name(self, name: str) -> str:
        return "/".join(p for p in (clean_name(self.prefix), clean_name(name)) if p)

    def _account_base(self) -> tuple[str, str, str]:
        """(scheme, netloc, path) of the account URL, without any SAS query."""
        parts = urlsplit(self.blob.account_url)
        return parts.scheme, parts.netloc, parts.path.rstrip("/")

    def account_name(self) -> str:
        """From the URL: <account>.blob.<suffix>, or the first path segment of an emulator's path-style URL."""
        scheme, netloc, path = self._account_base()
        host = netloc.split("@")[-1].split(":")[0]
        if ".blob." in host:
            return host.split(".blob.")[0]
        first = path.strip("/").split("/")[0]
        if not first:
            raise ValueError(f"Cannot tell the storage account from {self.uri()!r}: use https://<account>.blob.core.windows.net or http://host:port/<account>")
        return first

    @contextmanager
    def _container(self) -> Iterator[ContainerClient]:
        with self.blob.get_client() as service:
            yield service.get_container_client(self.container)

    def list_names(self, prefix: str = "") -> list[str]:
        start = self._blob_name(prefix)
        skip = len(clean_name(self.prefix)) + 1 if clean_name(self.prefix) else 0
        with self._container() as container:
            return sorted(b.name[skip:] for b in container.list_blobs(name_starts_with=f"{start}/" if start else None))

    def exists(self, name: str) -> bool:
        with self._container() as container:
            return container.get_blob_client(self._blob_name(name)).exists()

    def read_bytes(self, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        with self._container() as container:
            try:
                return container.get_blob_client(self._blob_name(name)).download_blob().readall()
            except ResourceNotFoundError as err:
                raise FileNotFoundError(f"No file {clean_name(name)!r} in the file drop: expected blob {self.uri(name)}") from err

    def write_bytes(self, name: str, data: bytes) -> None:
        # one Put Blob (or staged blocks committed at once for large data): atomic for readers
        with self._container() as container:
            container.get_blob_client(self._blob_name(name)).upload_blob(data, overwrite=True)

    def uri(self, name: str = "") -> str:
        scheme, netloc, path = self._account_base()
        netloc = netloc.split("@")[-1]  # no user:password@ either
        return "/".join(p for p in (f"{scheme}://{netloc}{path}", self.container, self._blob_name(name)) if p)

    def delta_uri(self, name: str) -> str:
        return f"az://{self.container}/{self._blob_name(name)}"

    def delta_storage_options(self) -> StorageOptions:
        """account_name; the endpoint unless it is the public cloud's default (Azurite, sovereign clouds);
        allow_http for http:// (Azurite); the credential: account_key, sas_token, or none, in which case
        delta-rs (object_store) authenticates from the environment itself (AZURE_CLIENT_ID /
        AZURE_CLIENT_SECRET / AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, else managed identity).
        `use_emulator` is not used: it ignores the endpoint and always goes to 127.0.0.1:10000."""
        scheme, netloc, path = self._account_base()
        options = StorageOptions(account_name=self.account_name())
        host = netloc.split("@")[-1].split(":")[0]
        if not host.endswith(".blob.core.windows.net") or path:
            options["endpoint"] = f"{scheme}://{netloc.split('@')[-1]}{path}"
        if scheme == "http":
            options["allow_http"] = "true"
        credential = self.blob.credential
        query_sas = urlsplit(self.blob.account_url).query
        if credential.credential_type == "key":
            options["account_key"] = credential.key
        elif credential.credential_type == "sas":
            options["sas_token"] = credential.token.lstrip("?")
        elif query_sas:
            options["sas_token"] = query_sas
        elif credential.credential_type == "anonymous":
            options["skip_signature"] = "true"
        return options


class Adls2FileDrops(FileDropResource):
    """File drops in an ADLS Gen2 file system (hierarchical namespace), through dagster-azure's ADLS2Resource."""

    adls2: ADLS2Resource
    file_system: str = Field(description="The ADLS Gen2 file system (container).")
    prefix: str = Field(default="", description="Optional folder inside the file system.")

    def _path(self, name: str) -> str:
        return "/".join(p for p in (clean_name(self.prefix), clean_name(name)) if p)

    def _fs(self):
        return self.adls2.adls2_client.get_file_system_client(self.file_system)

    def _host(self) -> str:
        return f"{self.adls2.storage_account}.dfs.{self.adls2.endpoint_suffix}"

    def list_names(self, prefix: str = "") -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        start, skip = self._path(prefix), len(clean_name(self.prefix)) + 1 if clean_name(self.prefix) else 0
        try:
            return sorted(p.name[skip:] for p in self._fs().get_paths(path=start or None, recursive=True) if not p.is_directory)
        except ResourceNotFoundError:
            return []

    def exists(self, name: str) -> bool:
        return self._fs().get_file_client(self._path(name)).exists()

    def read_bytes(self, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._fs().get_file_client(self._path(name)).download_file().readall()
        except ResourceNotFoundError as err:
            raise FileNotFoundError(f"No file {clean_name(name)!r} in the file drop: expected {self.uri(name)}") from err

    def write_bytes(self, name: str, data: bytes) -> None:
        self._fs().get_file_client(self._path(name)).upload_data(data, overwrite=True)

    def uri(self, name: str = "") -> str:
        return f"abfss://{self.file_system}@{self._host()}/{self._path(name)}".rstrip("/")

    def delta_uri(self, name: str) -> str:
        return self.uri(name)

    def delta_storage_options(self) -> StorageOptions:
        options = StorageOptions(account_name=self.adls2.storage_account)
        credential = self.adls2.credential
        if credential.credential_type == "key":
            options["account_key"] = credential.key
        elif credential.credential_type == "sas":
            options["sas_token"] = credential.token.lstrip("?")
        return options  # otherwise delta-rs authenticates from the environment (AZURE_CLIENT_ID / _SECRET / _TENANT_ID, managed identity)


def adls2_drops_from_env(file_system: str) -> Adls2FileDrops:
    """ADLS Gen2 drops: the lake's identity (AZURE_AUTH), else AZURE_STORAGE_KEY, else AZURE_STORAGE_SAS_TOKEN."""
    if os.getenv(ENV_AUTH, "").strip() in IDENTITY_AUTH or not (os.getenv(ENV_KEY) or os.getenv(ENV_SAS)):
        credential = ADLS2DefaultAzureCredential(kwargs={})
    elif os.getenv(ENV_KEY):
        credential = ADLS2Key(key=EnvVar(ENV_KEY))
    else:
        credential = ADLS2SASToken(token=EnvVar(ENV_SAS))
    suffix = os.getenv(ENV_DFS_SUFFIX, "dfs.core.windows.net").removeprefix("dfs.")
    adls2 = ADLS2Resource(storage_account=os.environ[ENV_ACCOUNT], credential=credential, endpoint_suffix=suffix)
    return Adls2FileDrops(adls2=adls2, file_system=file_system, prefix=os.getenv(ENV_PREFIX, ""))


def file_drops_from_env() -> FileDropResource:
    """The local folder by default; an ADLS Gen2 file system (DFS endpoint, ADLS2Resource) when
    AZURE_STORAGE_ACCOUNT and FILE_DROPS_FILESYSTEM are set; else Azure Blob Storage when AZURE_BLOB_ACCOUNT_URL
    or AZURE_STORAGE_ACCOUNT is set. Credential: DefaultAzureCredential when AZURE_AUTH is service_principal or managed_identity
    (AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, as for the lake), else AZURE_STORAGE_KEY, else
    AZURE_STORAGE_SAS_TOKEN, else DefaultAzureCredential. Secrets stay EnvVars: resolved at run time, never
    shown in the UI's resource config."""
    account_url, account = os.getenv(ENV_ACCOUNT_URL, ""), os.getenv(ENV_ACCOUNT, "")
    if account and os.getenv(ENV_FILESYSTEM):
        return adls2_drops_from_env(os.environ[ENV_FILESYSTEM])
    if not (account_url or account):
        return LocalFileDrops(root=os.getenv(ENV_ROOT) or f"{default_lake_root()}/drops")
    if os.getenv(ENV_AUTH, "").strip() in IDENTITY_AUTH:  # the lake's identity (resources/azure.py) for the drops too
        credential = AzureBlobStorageDefaultCredential()
    elif os.getenv(ENV_KEY):
        credential = AzureBlobStorageKeyCredential(key=EnvVar(ENV_KEY))
    elif os.getenv(ENV_SAS):
        credential = AzureBlobStorageSASTokenCredential(token=EnvVar(ENV_SAS))
    else:
        credential = AzureBlobStorageDefaultCredential()
    return BlobFileDrops(
        blob=AzureBlobStorageResource(account_url=EnvVar(ENV_ACCOUNT_URL) if account_url else f"https://{account}.blob.core.windows.net", credential=credential),
        container=os.getenv(ENV_CONTAINER, DEFAULT_CONTAINER),
        prefix=os.getenv(ENV_PREFIX, ""),
    )


__all__ = ["Adls2FileDrops", "BlobFileDrops", "FileDropResource", "LocalFileDrops", "StorageOptions", "clean_name", "file_drops_from_env"]
