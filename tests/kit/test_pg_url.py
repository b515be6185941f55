"""libpq URLs with one host or several: their hosts, the same URL for another user, and the
form SQLAlchemy's asyncpg dialect takes."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from app.db import sqlalchemy_url, with_user
from app.kit.pg_url import HostPort, PgUrl, hosts

PAIR = (
    "postgresql://timebank@127.0.0.1:5433,127.0.0.1:5434/timebank?target_session_attrs=read-write"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (PAIR, [HostPort("127.0.0.1", 5433), HostPort("127.0.0.1", 5434)]),
        ("postgresql://u:p@db-a,db-b:6000/x", [HostPort("db-a", None), HostPort("db-b", 6000)]),
        (
            "postgresql://u@[::1]:5433,[fd00::2]/x",
            [HostPort("::1", 5433), HostPort("fd00::2", None)],
        ),
        ("postgresql://u@%2Ftmp%2Fpg:5433/x", [HostPort("/tmp/pg", 5433)]),
        ("postgres://h", [HostPort("h", None)]),
        ("postgresql://postgres:@/postgres?host=/tmp/x", []),  # the socket in the query
    ],
)
def test_the_hosts_of_a_url_in_order(url: str, expected: list[HostPort]) -> None:
    assert hosts(url) == expected


def test_a_url_is_given_back_as_written() -> None:
    for url in (PAIR, "postgresql://u:p@[::1]:1,h/d%20b?a=1&a=2#f", "postgresql:///db?host=/s"):
        assert PgUrl.parse(url).text() == url


def test_a_port_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="not a number"):
        hosts("postgresql://u@h:port/db")
    with pytest.raises(ValueError, match="postgresql://"):
        hosts("127.0.0.1:5432")


def test_the_last_value_of_a_parameter_counts() -> None:
    url = PgUrl.parse("postgresql://u@h/db?target_session_attrs=any&target_session_attrs=primary")
    assert url.param("target_session_attrs") == "primary"
    assert url.param("sslmode") is None
    assert url.database == "db"


def test_with_user_keeps_every_host_and_parameter() -> None:
    assert with_user(PAIR, "timebank_app") == (
        "postgresql://timebank_app@127.0.0.1:5433,127.0.0.1:5434/timebank"
        "?target_session_attrs=read-write"
    )
    assert with_user(PAIR, "timebank_owner", "other") == (
        "postgresql://timebank_owner@127.0.0.1:5433,127.0.0.1:5434/other"
        "?target_session_attrs=read-write"
    )


def test_with_user_drops_the_password_and_quotes_names() -> None:
    assert (
        with_user("postgresql://root:secret@h:5/db", "a b", "c/d") == "postgresql://a%20b@h:5/c%2Fd"
    )
    # The embedded server's URL: its socket directory in the query, no host.
    embedded = "postgresql://postgres:@/postgres?host=/tmp/pg-socket"
    assert with_user(embedded, "timebank_app", "timebank") == (
        "postgresql://timebank_app@/timebank?host=/tmp/pg-socket"
    )


def test_the_engine_url_names_the_dialect_user_and_database_only() -> None:
    # The engine connects through its own creator (every host, each its own timeout): the
    # dialect gets no host to try, IPv6 lists included, and no password to show.
    assert sqlalchemy_url(PAIR) == "postgresql+asyncpg://timebank@/timebank"
    assert make_url(sqlalchemy_url(PAIR)).database == "timebank"
    ipv6 = "postgresql://u:secret@[::1]:5433,[::1]:5434/db?sslmode=disable"
    assert sqlalchemy_url(ipv6) == "postgresql+asyncpg://u@/db"
    assert sqlalchemy_url("sqlite://") == "sqlite://"
