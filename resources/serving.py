"""The BI serving database: where risk, compliance and audit users' tools (Power BI, Excel, SQL clients) read
the daily tables and views published by the `bi_serving` asset.

One SQLAlchemy URL picks the database: a SQLite file `<LAKE_ROOT>/serving/compliance.db` by default (no
server), or SERVING_DB_URL in production (Azure SQL / Synapse via `mssql+pyodbc://`, PostgreSQL via
`postgresql+psycopg2://`, ...). The URL may hold a password, so it comes in through `dagster.EnvVar`, is
never logged or stored, and only its dialect and host are shown (`safe_target`).
"""

import os
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

URL_ENV = "SERVING_DB_URL"
SQLITE_FILE = "serving/compliance.db"  # under a local lake root


def sqlite_url(lake_root: str) -> str:
    return f"sqlite:///{Path(lake_root).resolve() / SQLITE_FILE}"


def describe_url(url: str) -> str:
    """dialect://host[:port]/database of a URL, without user or password (the file path for SQLite)."""
    try:
        u = make_url(url.strip())
    except ArgumentError:
        return "<unparseable serving database URL>"
    if u.get_backend_name() == "sqlite":
        return f"{u.drivername} file {u.database or ':memory:'}"
    port = f":{u.port}" if u.port else ""
    return f"{u.drivername}://{u.host or ''}{port}/{u.database or ''}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets BI readers read while a day is being replaced; NORMAL sync is safe with WAL and much faster."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "temp_store=MEMORY", "cache_size=-65536", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class ServingDatabaseResource(ConfigurableResource):
    """The SQL database BI tools read: a SQLAlchemy URL (a SQLite file by default, SERVING_DB_URL in production)."""

    url: str = Field(
        default="",
        repr=False,
        description=f"SQLAlchemy URL of the serving database ({URL_ENV}); may hold a password: never logged, only dialect and host are shown.",
    )

    @property
    def configured(self) -> bool:
        return bool(self.url.strip())

    def safe_target(self) -> str:
        """What may be logged or put in metadata about the database: dialect, host, port, database name."""
        return describe_url(self.url) if self.configured else "nowhere (no serving database configured)"

    @property
    def dialect(self) -> str:
        """The backend name: sqlite, postgresql, mssql, ..."""
        return make_url(self.url.strip()).get_backend_name()

    def create_engine(self) -> Engine:
        """A new engine (the caller disposes it). SQLite: the file's folder is created, WAL journal; SQL Server:
        pyodbc's fast_executemany for bulk inserts."""
        if not self.configured:
            raise ValueError(
                f"No serving database configured: set {URL_ENV} to a SQLAlchemy URL (e.g. mssql+pyodbc://..., "
                "postgresql+psycopg2://...); a local lake defaults to a SQLite file under <LAKE_ROOT>/serving"
            )
        url = make_url(self.url.strip())
        kwargs: dict = {"pool_pre_ping": True, "hide_parameters": True}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # Dagster may close a pooled connection from another thread than the one that opened it
            engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if url.get_backend_name() == "mssql" and url.get_driver_name() == "pyodbc":
            kwargs["fast_executemany"] = True
        return create_engine(url, **kwargs)


def serving_from_env(lake_root: str) -> ServingDatabaseResource:
    """SERVING_DB_URL (through dg.EnvVar: the UI and run storage see the variable's name, not the URL) when set;
    else the SQLite file <lake_root>/serving/compliance.db for a local lake; else unconfigured (the asset then
    fails with what to set)."""
    if os.getenv(URL_ENV, "").strip():
        return ServingDatabaseResource(url=EnvVar(URL_ENV))
    if "://" not in lake_root or lake_root.startswith("file://"):
        return ServingDatabaseResource(url=sqlite_url(lake_root.removeprefix("file://")))
    return ServingDatabaseResource(url="")


__all__ = ["ServingDatabaseResource", "URL_ENV", "describe_url", "serving_from_env", "sqlite_url"]
