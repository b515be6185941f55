"""C2SP tlog-policy files (https://c2sp.org/tlog-policy): which logs and witnesses a verifier
knows, and the quorum of witnesses whose cosignatures make a checkpoint acceptable. Pure: no
database, no network.

Followed as written: lines end in 0x0A and their items are separated by spaces and tabs only;
blank lines and lines whose first item starts with `#` are ignored; the octets allowed are
0x09, 0x0A, 0x20-0x7E and 0x80-0xFF, those with the high bit set opaque (names are compared as
octet strings); `log <vkey> [<url>]` (note keys, type 0x01), `witness <name> <vkey> [<url>]`
(cosigner keys, type 0x04), `group <name> all|any|<k> <name>...` naming only what was defined
on earlier lines, with 1 <= k <= n, and exactly one `quorum <name>|none`. Two logs or two
witnesses wrapping the same public key are refused, as is a second definition of a name.
"Each defined name can be listed as a group member at most once" is read over the whole file,
so that a witness counts towards the quorum in one way only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from app.audit.cosignature import Cosigner, parse_cosigner_key, timestamp_of
from app.audit.note import NoteError, Verifier, open_note, parse_verifier_key, raw_public

NONE = b"none"
# The spec asks for at least 32 of each; the cap also bounds the groups' nesting.
MAX_LOGS = MAX_WITNESSES = MAX_GROUPS = 256
_ITEM_SEPARATOR = re.compile(rb"[ \t]+")
_DECIMAL = re.compile(rb"[0-9]+")


class PolicyError(ValueError):
    """A policy file that does not follow tlog-policy; `line` is 1-based (None: the file)."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason

    def __str__(self) -> str:
        return self.reason if self.line is None else f"line {self.line}: {self.reason}"


def shown(name: bytes) -> str:
    """A policy name for people: UTF-8, other octets escaped."""
    return name.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class PolicyLog:
    """A `log` line: the log's note key (its name is the log's origin)."""

    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyWitness:
    """A `witness` line: its name in the policy and its cosigner key."""

    name: bytes
    cosigner: Cosigner
    url: str | None = None


@dataclass(frozen=True)
class Group:
    """A `group` line: witnessed when at least `k` of its members are."""

    name: bytes
    k: int
    members: tuple[PolicyWitness | Group, ...]


Node = PolicyWitness | Group


def witnessed(node: Node, cosigned: frozenset[bytes]) -> bool:
    """Whether `node` witnessed a checkpoint cosigned by the witnesses named in `cosigned`."""
    if isinstance(node, PolicyWitness):
        return node.name in cosigned
    return sum(witnessed(member, cosigned) for member in node.members) >= node.k


def describe(node: Node | None) -> str:
    """What `node` needs, for a person: `X (2 of A, B, C)`, nested for groups of groups."""
    if node is None:
        return "none (no cosignature needed)"
    if isinstance(node, PolicyWitness):
        return shown(node.name)
    inner = ", ".join(describe(member) for member in node.members)
    return f"{shown(node.name)} ({node.k} of {inner})"


@dataclass(frozen=True)
class Cosigned:
    """A listed witness whose cosignature verified on the note, and the time it states."""

    witness: str
    key_name: str
    timestamp: int


@dataclass(frozen=True)
class QuorumVerdict:
    """Whether a checkpoint meets the policy; who cosigned it; what the quorum needs; and,
    when not met, why not."""

    met: bool
    cosigned: tuple[Cosigned, ...]
    needs: str
    reason: str | None = None


@dataclass(frozen=True)
class WitnessPolicy:
    """A parsed policy: its logs, witnesses and groups (in file order) and its quorum (None
    for `quorum none`)."""

    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[Group, ...]
    quorum: Node | None

    def satisfied(self, cosigned: Iterable[bytes]) -> bool:
        """Whether the quorum holds when exactly the witnesses named in `cosigned` cosigned."""
        return self.quorum is None or witnessed(self.quorum, frozenset(cosigned))

    def check(self, note: str, log_verifiers: Iterable[Verifier]) -> QuorumVerdict:
        """Open the signed checkpoint `note` with the log's keys (`log_verifiers` and the
        policy's `log` lines) and the policy's cosigners, and evaluate the quorum."""
        needs = describe(self.quorum)
        given = list(log_verifiers)
        listed = [log.verifier for log in self.logs]
        cosigners = {(w.cosigner.name, w.cosigner.key_id): w for w in self.witnesses}
        known: dict[tuple[str, int, bytes], Verifier] = {}
        for verifier in [*given, *listed, *(w.cosigner for w in self.witnesses)]:
            known.setdefault(
                (verifier.name, verifier.key_id, raw_public(verifier.public_key)), verifier
            )
        try:
            text, signatures = open_note(note, known.values())
        except NoteError as exc:
            return QuorumVerdict(False, (), needs, f"the checkpoint note does not verify: {exc}")
        origin = text.split("\n", 1)[0]

        def signed_by(verifiers: list[Verifier]) -> bool:
            keys = {(v.name, v.key_id) for v in verifiers}
            return any((s.name, s.key_id) in keys for s in signatures)

        # tlog-policy: a listed log's key name MUST be the log's origin.
        listed = [v for v in listed if v.name == origin]

        found = [
            (cosigners[(s.name, s.key_id)], s)
            for s in signatures
            if (s.name, s.key_id) in cosigners
        ]
        cosigned = tuple(Cosigned(shown(w.name), s.name, timestamp_of(s)) for w, s in found)
        reason = None
        if given and not signed_by(given):
            reason = f"no signature of the log's keys (origin {origin!r})"
        elif self.logs and not signed_by(listed):
            reason = f"no signature of a log the policy lists under the origin {origin!r}"
        elif not given and not self.logs:
            reason = "no log key to check the checkpoint's signature with"
        elif not self.satisfied(w.name for w, _ in found):
            who = ", ".join(c.witness for c in cosigned) or "no listed witness"
            reason = f"the witness quorum is not met: it needs {needs}; cosigned by {who}"
        return QuorumVerdict(reason is None, cosigned, needs, reason)


def _text(item: bytes, line: int, what: str) -> str:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(line, f"{what} is not UTF-8") from None


def _url(items: list[bytes]) -> str | None:
    # A URL's octets are opaque to the policy: kept, and shown as they decode.
    return items[0].decode("utf-8", "surrogateescape") if items else None


@dataclass
class _Parser:
    logs: list[PolicyLog]
    witnesses: list[PolicyWitness]
    groups: list[Group]
    names: dict[bytes, Node]
    listed: set[bytes]
    quorum: Node | None = None
    quorum_line: int | None = None

    def log(self, line: int, items: list[bytes]) -> None:
        if not 1 <= len(items) <= 2:
            raise PolicyError(line, "a log line is `log <vkey> [<url>]`")
        if len(self.logs) >= MAX_LOGS:
            raise PolicyError(line, f"more than {MAX_LOGS} logs")
        try:
            verifier = parse_verifier_key(_text(items[0], line, "the vkey"))
        except NoteError as exc:
            raise PolicyError(
                line, f"the log's vkey is not a note key (type 0x01): {exc}"
            ) from None
        if any(
            raw_public(log.verifier.public_key) == raw_public(verifier.public_key)
            for log in self.logs
        ):
            raise PolicyError(line, "a log with this public key is defined already")
        self.logs.append(PolicyLog(verifier, _url(items[1:])))

    def _new_name(self, line: int, name: bytes) -> None:
        if name == NONE:
            raise PolicyError(line, "the name `none` is predefined")
        if name in self.names:
            raise PolicyError(line, f"the name {shown(name)!r} is defined already")

    def witness(self, line: int, items: list[bytes]) -> None:
        if not 2 <= len(items) <= 3:
            raise PolicyError(line, "a witness line is `witness <name> <vkey> [<url>]`")
        if len(self.witnesses) >= MAX_WITNESSES:
            raise PolicyError(line, f"more than {MAX_WITNESSES} witnesses")
        name = items[0]
        self._new_name(line, name)
        try:
            cosigner = parse_cosigner_key(_text(items[1], line, "the vkey"))
        except NoteError as exc:
            raise PolicyError(line, f"witness {shown(name)!r}: {exc}") from None
        if any(
            raw_public(w.cosigner.public_key) == raw_public(cosigner.public_key)
            for w in self.witnesses
        ):
            raise PolicyError(line, "a witness with this public key is defined already")
        witness = PolicyWitness(name, cosigner, _url(items[2:]))
        self.witnesses.append(witness)
        self.names[name] = witness

    def group(self, line: int, items: list[bytes]) -> None:
        if len(items) < 3:
            raise PolicyError(line, "a group line is `group <name> all|any|<k> <name>...`")
        if len(self.groups) >= MAX_GROUPS:
            raise PolicyError(line, f"more than {MAX_GROUPS} groups")
        name, threshold, member_names = items[0], items[1], items[2:]
        self._new_name(line, name)
        members: list[Node] = []
        for member in member_names:
            if member == NONE:
                raise PolicyError(line, "`none` cannot be a group member")
            node = self.names.get(member)
            if node is None:
                raise PolicyError(line, f"{shown(member)!r} is not defined on an earlier line")
            if member in self.listed:
                raise PolicyError(line, f"{shown(member)!r} is a group member already")
            self.listed.add(member)
            members.append(node)
        n = len(members)
        if threshold == b"all":
            k = n
        elif threshold == b"any":
            k = 1
        elif _DECIMAL.fullmatch(threshold):
            # (int() of thousands of digits raises: anything that long is > n anyway)
            k = int(threshold) if len(threshold) <= 20 else n + 1
            if not 1 <= k <= n:
                raise PolicyError(line, f"the threshold must be between 1 and {n}")
        else:
            raise PolicyError(line, "the threshold must be all, any or a decimal number")
        group = Group(name, k, tuple(members))
        self.groups.append(group)
        self.names[name] = group

    def set_quorum(self, line: int, items: list[bytes]) -> None:
        if len(items) != 1:
            raise PolicyError(line, "a quorum line is `quorum <name>`")
        if self.quorum_line is not None:
            raise PolicyError(line, f"a second quorum line (the first is line {self.quorum_line})")
        name = items[0]
        if name != NONE:
            node = self.names.get(name)
            if node is None:
                raise PolicyError(line, f"{shown(name)!r} is not defined on an earlier line")
            self.quorum = node
        self.quorum_line = line


def parse_policy(data: bytes | str) -> WitnessPolicy:
    """Parse a tlog-policy file; raises PolicyError naming the line."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    parser = _Parser([], [], [], {}, set())
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the last line's newline (a last line without one is read too)
    for number, line in enumerate(lines, 1):
        bad = next((o for o in line if o != 0x09 and (o < 0x20 or o == 0x7F)), None)
        if bad is not None:
            raise PolicyError(number, f"the octet 0x{bad:02x} is not allowed in a policy")
        items = [item for item in _ITEM_SEPARATOR.split(line) if item]
        if not items or items[0].startswith(b"#"):
            continue
        keyword, rest = items[0], items[1:]
        if keyword == b"log":
            parser.log(number, rest)
        elif keyword == b"witness":
            parser.witness(number, rest)
        elif keyword == b"group":
            parser.group(number, rest)
        elif keyword == b"quorum":
            parser.set_quorum(number, rest)
        else:
            raise PolicyError(number, f"unknown keyword {shown(keyword)!r}")
    if parser.quorum_line is None:
        raise PolicyError(None, "the policy has no quorum line")
    return WitnessPolicy(
        tuple(parser.logs), tuple(parser.witnesses), tuple(parser.groups), parser.quorum
    )
