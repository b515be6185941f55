"""Words for a journal entry as a member reads it: which project, item, rule or book.

Pure: the service gathers what the entries refer to, this module only names it. The kinds and
their `meta` are those of docs/ledger-format.md §6; a caller's own kinds are named by memo.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from app.kiosk.schemas import RedemptionRead
from app.ledger.service import EntryFacts
from app.statements.schemas import (
    EntryAbout,
    ItemLine,
    Named,
    ProjectRef,
    RedemptionRef,
    RuleRef,
)
from app.volunteering.figures import hours
from app.volunteering.projects import ProjectTitle

HOLD_LABELS = {"hold": "预留", "hold.post": "预留入账", "hold.void": "预留撤销"}
REDEMPTION_LABELS = {
    "hold": "爱心超市兑换待确认",
    "hold.post": "爱心超市兑换",
    "hold.void": "爱心超市兑换取消",
}


@dataclass
class References:
    """What the entries of a page refer to, looked up once for the page."""

    projects: dict[uuid.UUID, ProjectTitle] = field(default_factory=dict)
    organisations: dict[uuid.UUID, str] = field(default_factory=dict)
    redemptions: dict[uuid.UUID, RedemptionRead] = field(default_factory=dict)
    reversed: dict[uuid.UUID, EntryFacts] = field(default_factory=dict)


def as_uuid(value: Any) -> uuid.UUID | None:
    """A UUID from a `meta` member, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def hold_of(tx_id: uuid.UUID, facts: EntryFacts) -> uuid.UUID | None:
    """The hold an entry places or resolves, if it is one of the hold kinds."""
    if facts.kind == "hold":
        return tx_id
    if facts.kind in ("hold.post", "hold.void"):
        return as_uuid(facts.meta.get("hold"))
    return None


def _named(org_id: uuid.UUID | None, refs: References) -> Named | None:
    name = refs.organisations.get(org_id) if org_id is not None else None
    return Named(id=org_id, name=name) if org_id is not None and name is not None else None


def _service(facts: EntryFacts, refs: References) -> EntryAbout:
    project_id = as_uuid(facts.meta.get("project"))
    project = refs.projects.get(project_id) if project_id is not None else None
    ref = None
    label = "志愿服务"
    if project_id is not None:
        org = _named(project.organisation_id, refs) if project is not None else None
        ref = ProjectRef(id=project_id, title=project and project.title, organisation=org)
        if project is not None:
            label += f"：{project.title}" + (f"（{org.name}）" if org is not None else "")
    return EntryAbout(
        topic="service", label=label, project=ref, record_id=as_uuid(facts.meta.get("record"))
    )


def _hours(minutes: Any) -> str:
    """Hours as the figures show them (rounded half up), without trailing zeros."""
    value = minutes if isinstance(minutes, int) and not isinstance(minutes, bool) else 0
    return hours(value).rstrip("0").rstrip(".")


def _correction(facts: EntryFacts, refs: References) -> EntryAbout:
    """A service record corrected after its minutes were spent or lapsed, or what a later
    credit settled of what such a correction left owed."""
    if facts.kind == "service_correction.settle":
        return EntryAbout(
            topic="service",
            label="抵扣更正欠还时长",
            record_id=as_uuid(facts.meta.get("record")),
        )
    about = _service(facts, refs)
    label = about.label.replace("志愿服务", "志愿服务记录更正", 1)
    owed = facts.meta.get("owed")
    if isinstance(owed, int) and owed > 0:
        label += f"（欠还 {_hours(owed)} 小时）"
    return about.model_copy(update={"label": label})


def _exchange(facts: EntryFacts) -> EntryAbout:
    rule_id = as_uuid(facts.meta.get("rule"))
    code, version = facts.meta.get("rule_code"), facts.meta.get("rule_version")
    if rule_id is None or not isinstance(code, str) or not isinstance(version, int):
        return EntryAbout(topic="exchange", label="兑换")
    rule = RuleRef(id=rule_id, code=code, version=version)
    return EntryAbout(topic="exchange", label=f"兑换：规则 {code} 第 {version} 版", rule=rule)


def _hold(tx_id: uuid.UUID, facts: EntryFacts, refs: References) -> EntryAbout:
    hold_id = hold_of(tx_id, facts)
    reason = _text(facts.meta.get("reason"))
    found = refs.redemptions.get(hold_id) if hold_id is not None else None
    if found is None:
        return EntryAbout(topic="hold", label=HOLD_LABELS[facts.kind], reason=reason)
    site = _named(found.site_id, refs)
    items = [ItemLine(name=line.name, quantity=line.quantity) for line in found.lines]
    label = REDEMPTION_LABELS[facts.kind]
    if facts.kind == "hold.void" and reason == "expired":
        label = "爱心超市兑换过期"
    label += "：" + "、".join(f"{i.name} ×{i.quantity}" for i in items)
    if site is not None:
        label += f"（{site.name}）"
    redemption = RedemptionRef(id=found.id, status=found.status, site=site, items=items)
    return EntryAbout(topic="redemption", label=label, redemption=redemption, reason=reason)


def _gift(facts: EntryFacts, amount: int) -> EntryAbout:
    relationship = _text(facts.meta.get("relationship"))
    label = ("赠出" if amount < 0 else "受赠") + (f"（{relationship}）" if relationship else "")
    return EntryAbout(
        topic="gift",
        label=label,
        gift_id=as_uuid(facts.meta.get("gift")),
        relationship=relationship,
    )


def _recognition(facts: EntryFacts) -> EntryAbout:
    counterpart = facts.meta.get("counterpart")
    book = _text(counterpart.get("book")) if isinstance(counterpart, dict) else None
    if facts.kind == "recognition.out":
        label = "通存通兑：转出" + (f"到账本 {book}" if book else "")
    else:
        label = "通存通兑：" + (f"从账本 {book} " if book else "") + "转入"
    return EntryAbout(topic="recognition", label=label, counterpart_book=book)


def _public_pool(facts: EntryFacts) -> EntryAbout:
    if facts.kind == "public_pool.donation":
        return EntryAbout(topic="public_pool", label="捐入公共时间池")
    reason = _text(facts.meta.get("reason"))
    label = "公共时间池发放" + (f"：{reason}" if reason else "")
    return EntryAbout(topic="public_pool", label=label, reason=reason)


def _expiry(facts: EntryFacts) -> EntryAbout:
    as_of = _text(facts.meta.get("as_of"))
    return EntryAbout(topic="expiry", label="到期失效" + (f"（截至 {as_of}）" if as_of else ""))


def _other(facts: EntryFacts) -> EntryAbout:
    memo = facts.memo or None
    label = f"{facts.kind}：{memo}" if memo else facts.kind
    return EntryAbout(topic="other", label=label, memo=memo)


def describe(tx_id: uuid.UUID, facts: EntryFacts, amount: int, refs: References) -> EntryAbout:
    """What an entry is about, for a member whose leg moved `amount`."""
    kind = facts.kind
    if kind == "reversal":
        target = as_uuid(facts.meta.get("reverses"))
        undone = refs.reversed.get(target) if target is not None else None
        # A reversal cannot be reversed (docs/ledger-format.md §6.5): one level only.
        if target is None or undone is None or undone.kind == "reversal":
            return EntryAbout(topic="reversal", label="冲正", reverses=target)
        # The member's leg of a reversal is the negation of their leg of the entry it undoes.
        inner = describe(target, undone, -amount, refs)
        return inner.model_copy(
            update={"topic": "reversal", "label": f"冲正：{inner.label}", "reverses": target}
        )
    root = kind.split(".", 1)[0]
    if kind == "service_credit":
        return _service(facts, refs)
    if root == "service_correction":
        return _correction(facts, refs)
    if kind == "exchange":
        return _exchange(facts)
    if root == "hold":
        return _hold(tx_id, facts, refs)
    if kind == "gift":
        return _gift(facts, amount)
    if kind in ("recognition.out", "recognition.in"):
        return _recognition(facts)
    if kind in ("public_pool.donation", "public_pool.grant"):
        return _public_pool(facts)
    if kind == "expiry":
        return _expiry(facts)
    return _other(facts)
