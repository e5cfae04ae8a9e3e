"""Throw-away PostgreSQL databases on a test server, for the tests and the benches."""

from __future__ import annotations

import os
import uuid

import psycopg
from psycopg import sql

SERVER_URL = os.environ.get(
    "FLEETCARE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``."""
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create an empty database (or a copy of ``template``); return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        for attempt in range(20):
            try:
                conn.execute(query)
                break
            except psycopg.errors.ObjectInUse:
                # something is connected to the template (TimescaleDB's background workers
                # visit every database with the extension that is not marked a template:
                # see seal_template); no test uses the template, so end them.
                if attempt == 19:
                    raise
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (template,),
                )
    return database_url(server_url, name)


def seal_template(server_url: str, name: str) -> None:
    """Make database ``name`` a template that nothing connects to, and end whatever is connected.

    CREATE DATABASE ... TEMPLATE waits 5 s and fails while anything else is connected to the
    template. TimescaleDB starts a job scheduler in every database with the extension and
    visits them again later, but never a template database, and no one can connect to a
    database that allows no connections: each copy then starts at once.
    """
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def drop_database(server_url: str, name: str) -> None:
    """Drop a test database (or a sealed template), closing whatever is still connected to it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if row is not None and row[0]:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
            )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def unique_name(prefix: str) -> str:
    """A database name that no other test or bench run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
