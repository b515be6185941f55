"""libpq connection URLs (`postgresql://user@h1:p1,h2:p2/db?target_session_attrs=...`): their
hosts, their parameters, and the same URL for another user, database or host. Pure.

A URL may name several hosts, as libpq allows: a client tries them in order and keeps the
first that takes the connection and has the wanted `target_session_attrs` (a primary with a
standby: `?target_session_attrs=read-write` finds whichever is the primary now).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit


@dataclass(frozen=True, slots=True)
class HostPort:
    """One host of a URL; `port` None means the client's default (5432, or PGPORT)."""

    host: str
    port: int | None

    def spec(self) -> str:
        """`host:port` as a URL writes it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PgUrl:
    """A URL cut at its parts, the host list kept as written."""

    scheme: str
    userinfo: str | None  # `user` or `user:password`, as written
    hostlist: str  # `h1:p1,h2:p2`, as written (may be empty: a Unix socket)
    rest: str  # `/db?query#fragment`, as written

    @classmethod
    def parse(cls, url: str) -> PgUrl:
        scheme, sep, tail = url.partition("://")
        if not sep:
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        ends = [i for i in (tail.find("/"), tail.find("?"), tail.find("#")) if i >= 0]
        cut = min(ends, default=len(tail))
        netloc, rest = tail[:cut], tail[cut:]
        userinfo, at, hostlist = netloc.rpartition("@")
        return cls(scheme, userinfo if at else None, hostlist, rest)

    def text(self) -> str:
        """The URL again."""
        user = "" if self.userinfo is None else f"{self.userinfo}@"
        return f"{self.scheme}://{user}{self.hostlist}{self.rest}"

    @property
    def hosts(self) -> list[HostPort]:
        """Each host of the host list, in order ([] for none)."""
        return [_host_port(spec) for spec in self.hostlist.split(",")] if self.hostlist else []

    @property
    def database(self) -> str:
        """The database the path names ('' for none)."""
        return unquote(urlsplit(self.rest).path.lstrip("/"))

    @property
    def query(self) -> list[tuple[str, str]]:
        """The query's parameters, in order."""
        return parse_qsl(urlsplit(self.rest).query, keep_blank_values=True)

    def with_(
        self,
        userinfo: str | None = None,
        hostlist: str | None = None,
        database: str | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> PgUrl:
        """The same URL with some parts replaced (None: kept)."""
        parts = urlsplit(self.rest)
        path = parts.path if database is None else "/" + quote(database, safe="")
        params = parts.query if query is None else urlencode(query, safe=":/,")
        rest = path + (f"?{params}" if params else "")
        rest += f"#{parts.fragment}" if parts.fragment else ""
        return PgUrl(
            self.scheme,
            self.userinfo if userinfo is None else userinfo,
            self.hostlist if hostlist is None else hostlist,
            rest,
        )

    def param(self, name: str) -> str | None:
        """The last value of one query parameter (as libpq and asyncpg take it), if any."""
        values = [value for key, value in self.query if key == name]
        return values[-1] if values else None


def _host_port(spec: str) -> HostPort:
    if spec.startswith("["):  # [IPv6]:port
        host, _, tail = spec[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = spec.partition(":")
    if port and not port.isdigit():
        raise ValueError(f"the port of {spec!r} is not a number")
    return HostPort(unquote(host), int(port) if port else None)


def hosts(url: str) -> list[HostPort]:
    """The hosts a URL names, in the order a client tries them."""
    return PgUrl.parse(url).hosts
