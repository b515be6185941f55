"""The words of a history line for the kinds the story test does not reach, and that any
`meta` whatever (a caller's own kinds carry any object) gives a line rather than an error."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.ledger.service import EntryFacts
from app.statements.describe import References, describe

TX = uuid.UUID(int=1)


def label(kind: str, meta: dict[str, Any], amount: int = 10, memo: str = "", **refs: Any) -> str:
    return describe(TX, EntryFacts(kind, memo, meta), amount, References(**refs)).label


def test_kinds_without_references_are_named_from_their_meta() -> None:
    assert label("expiry", {"as_of": "2026-12-31"}, -30) == "到期失效（截至 2026-12-31）"
    assert label("public_pool.donation", {}, -30) == "捐入公共时间池"
    assert label("public_pool.grant", {"reason": "困难老人帮扶"}) == "公共时间池发放：困难老人帮扶"
    assert label("gift", {"gift": str(TX), "relationship": "parent"}, -5) == "赠出（parent）"
    assert label("recognition.in", {"counterpart": {"book": "xh"}}) == "通存通兑：从账本 xh 转入"


def test_a_hold_of_no_redemption_and_a_callers_kind_are_named_plainly() -> None:
    assert label("hold", {"expires_at": "2026-12-05T00:00:00Z"}) == "预留"
    assert label("hold.void", {"hold": str(TX), "reason": "expired"}) == "预留撤销"
    assert label("transfer", {}, memo="三月补记") == "transfer：三月补记"
    assert label("transfer", {}) == "transfer"


def test_a_reversal_whose_entry_is_unknown_says_only_that_it_reverses() -> None:
    about = describe(TX, EntryFacts("reversal", "", {"reverses": "nonsense"}), 5, References())
    assert (about.topic, about.label, about.reverses) == ("reversal", "冲正", None)


def test_a_line_whose_references_are_gone_still_names_its_kind() -> None:
    project = str(uuid.uuid4())
    about = describe(TX, EntryFacts("service_credit", "", {"project": project}), 60, References())
    assert about.label == "志愿服务" and about.project is not None
    assert (str(about.project.id), about.project.title) == (project, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KINDS = [
    "service_credit",
    "exchange",
    "hold",
    "hold.post",
    "hold.void",
    "gift",
    "recognition.out",
    "recognition.in",
    "public_pool.donation",
    "public_pool.grant",
    "expiry",
    "reversal",
    "transfer",
]
META_KEYS = [
    "project",
    "record",
    "rule",
    "rule_code",
    "rule_version",
    "hold",
    "reason",
    "gift",
    "relationship",
    "counterpart",
    "as_of",
    "reverses",
]


@given(
    kind=st.sampled_from(KINDS),
    meta=st.dictionaries(st.sampled_from(META_KEYS), json_values, max_size=6),
    undone_meta=st.dictionaries(st.sampled_from(META_KEYS), json_values, max_size=6),
    undone_kind=st.sampled_from(KINDS),
    amount=st.integers(-(2**53), 2**53),
)
def test_any_meta_gives_a_line(
    kind: str, meta: dict[str, Any], undone_meta: dict[str, Any], undone_kind: str, amount: int
) -> None:
    target = uuid.UUID(int=2)
    if kind == "reversal":
        meta = {**meta, "reverses": str(target)}
    refs = References(reversed={target: EntryFacts(undone_kind, "", undone_meta)})
    about = describe(TX, EntryFacts(kind, "", meta), amount, refs)
    assert about.label
