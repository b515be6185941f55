"""`timebank demo`: a realistic district in a book `demo`, seeded through the HTTP API.

A social-work station and its communities, volunteer teams, social organisations and a charity
(each with an HOUR issuance account), a charity supermarket, residents' needs, a month of
service projects, a few hundred members, and their service: sign-ups, check-ins and check-outs
with the sites' rotating codes, records entered by hand, approvals (one by one and in bulk), a
few rejections, two answered disputes and one record reversed and replaced.

Everything goes through the real application in-process (`create_app` with its lifespan, an
httpx client on its ASGI interface), so every rule, posting and journal notice takes the same
path as a real client's. The district is planned first from `random.Random(SEED)` (names,
phone numbers and times relative to the day it runs: the same on every run), so that every
request obeys the service rules (windows, no overlaps, the daily caps); then the plan is
played, each member's steps in the order of their service time, members concurrently. The
service reads "now" from `app.state.clock`: while seeding it is each request's simulated moment
(a context variable, so concurrent members each have their own), and is restored afterwards.

The book is created once: a later run finds it and reports what is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.identity.credentials import create_credential
from app.kit.clock import utc_now

DEMO_BOOK = "demo"
DEMO_BOOK_NAME = "示范街道 (demo)"
SEED = 2026
# Requests in flight at once where their order does not matter.
CONCURRENCY = 8
BULK_APPROVE_BATCH = 200

# Starts a phase of the work (a name and how many steps), answering how to advance it.
Advance = Callable[[int], None]
PhaseStart = Callable[[str, int], Advance]


class DemoError(RuntimeError):
    """A seeding step the service refused (the plan is wrong, or the service changed)."""


# --- The district ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgSpec:
    key: str
    kind: str
    name: str
    person_in_charge: str
    categories: tuple[str, ...] = ()
    maker_checker: bool = False


STATION = OrgSpec("station", "social_work_station", "街道社工站", "陈建华")
COMMUNITIES = (
    OrgSpec("c0", "community", "幸福里社区", "张秀兰"),
    OrgSpec("c1", "community", "光明路社区", "李国强"),
    OrgSpec("c2", "community", "和平新村社区", "黄丽娟"),
    OrgSpec("c3", "community", "翠竹园社区", "郑海燕"),
)
SERVICE_ORGS = (
    OrgSpec(
        "youth",
        "volunteer_team",
        "青年志愿服务队",
        "刘洋",
        ("culture", "orphan_care", "community_governance", "emergency", "environment"),
    ),
    OrgSpec(
        "silver",
        "volunteer_team",
        "银龄志愿服务队",
        "王桂英",
        ("elder_care", "community_governance", "health_care", "culture"),
    ),
    OrgSpec(
        "sunshine",
        "social_org",
        "阳光助残服务社",
        "赵敏",
        ("disability_support", "counselling", "health_care"),
    ),
    OrgSpec(
        "green",
        "social_org",
        "绿色家园环保协会",
        "孙志强",
        ("environment", "community_governance", "emergency"),
    ),
    OrgSpec(
        "charity",
        "charity",
        "街道慈善会",
        "周建国",
        ("poverty_relief", "orphan_care", "elder_care", "counselling"),
        maker_checker=True,
    ),
)
KIOSK = OrgSpec("kiosk", "kiosk_site", "爱心超市", "吴春梅")

# (category, target group, description, urgency): what residents need, never who they are.
NEED_TEMPLATES = (
    ("elder_care", "empty_nest_elderly", "独居老人每周需要上门陪伴聊天和代购日用品", "urgent"),
    (
        "elder_care",
        "left_behind_elderly",
        "高龄老人希望有人教会使用智能手机挂号和视频通话",
        "normal",
    ),
    ("elder_care", "empty_nest_elderly", "行动不便的老人需要午间助餐送餐", "high"),
    ("poverty_relief", "subsistence_allowance", "低保家庭冬季缺少棉衣棉被等过冬物资", "high"),
    ("poverty_relief", "extreme_poverty", "特困人员需要定期代领药品和生活物资", "urgent"),
    ("orphan_care", "children_in_difficulty", "困境儿童放学后缺少课业辅导和看护", "high"),
    ("orphan_care", "left_behind_children", "留守儿童周末需要陪伴和兴趣活动", "normal"),
    ("disability_support", "disabled", "行动不便的残疾人需要志愿者陪同就医", "high"),
    ("disability_support", "disabled", "居家康复的残障人士需要陪练和心理支持", "normal"),
    ("community_governance", "other", "老旧小区楼道堆物较多，需要协助排查清理消防隐患", "high"),
    ("community_governance", "other", "垃圾分类投放点早晚高峰需要引导员", "normal"),
    ("culture", "left_behind_women", "留守妇女希望参加手工编织和电商技能培训", "low"),
    ("culture", "left_behind_children", "社区儿童希望有公益书法和绘画课", "low"),
    ("environment", "other", "小区沿河步道垃圾较多，需要定期清理", "normal"),
    ("environment", "other", "楼间绿地缺人养护，杂草丛生", "low"),
    ("emergency", "other", "汛期前需要清点、搬运和补充防汛沙袋", "urgent"),
    ("health_care", "empty_nest_elderly", "老年居民需要定期测量血压血糖", "normal"),
    ("health_care", "disabled", "残疾人家庭需要家庭医生签约咨询", "normal"),
    ("counselling", "empty_nest_elderly", "独居老人情绪低落，需要心理疏导和定期探访", "high"),
    ("counselling", "left_behind_women", "留守妇女需要家庭关系和情绪压力方面的咨询", "normal"),
    ("poverty_relief", "children_in_difficulty", "困难家庭儿童开学需要文具和校服", "high"),
    ("elder_care", "subsistence_allowance", "低保老人希望有人定期上门打扫卫生", "normal"),
)

ProjectKind = Literal["single", "fixed", "shift", "manual"]
# (title, category, place; `{c}` is the project's community), by the way service is recorded.
PROJECT_TEMPLATES: dict[ProjectKind, tuple[tuple[str, str, str], ...]] = {
    "single": (
        ("陪伴空巢老人聊天读报", "elder_care", "{c}老年活动室"),
        ("老年人智能手机教学", "elder_care", "{c}党群服务中心"),
        ("困境儿童课业辅导", "orphan_care", "{c}四点半课堂"),
        ("留守儿童周末陪伴", "orphan_care", "{c}儿童之家"),
        ("助残康复陪练", "disability_support", "{c}康复驿站"),
        ("垃圾分类宣传引导", "community_governance", "{c}垃圾分类投放点"),
        ("楼道消防隐患排查", "community_governance", "{c}各楼栋"),
        ("社区读书会", "culture", "{c}图书室"),
        ("少儿书法公益课", "culture", "{c}党群服务中心"),
        ("旧衣回收分拣", "environment", "{c}可回收物分拣点"),
        ("防汛物资清点搬运", "emergency", "街道应急物资仓库"),
        ("独居老人心理疏导探访", "counselling", "{c}心理咨询室"),
        ("爱心超市物资整理", "poverty_relief", "爱心超市"),
    ),
    "fixed": (
        ("义诊量血压测血糖", "health_care", "{c}卫生服务站"),
        ("助老义剪", "elder_care", "{c}老年活动室"),
        ("消防安全演练协助", "emergency", "{c}中心广场"),
    ),
    "shift": (
        ("爱心超市值班", "poverty_relief", "爱心超市"),
        ("垃圾分类早晚高峰值守", "community_governance", "{c}垃圾分类投放点"),
        ("社区卫生服务站导诊", "health_care", "{c}卫生服务站"),
        ("心理援助热线值守", "counselling", "街道社工站"),
    ),
    "manual": (
        ("沿河步道清洁行动", "environment", "{c}沿河步道"),
        ("困难家庭入户走访", "poverty_relief", "{c}辖区"),
        ("冬衣募集与分发", "poverty_relief", "{c}党群服务中心"),
        ("楼间绿地认养养护", "environment", "{c}楼间绿地"),
        ("陪同残障人士就医", "disability_support", "街道社区卫生服务中心"),
    ),
}
# Single activities (start and end, local time).
SLOTS = (
    ((8, 30), (11, 30)),
    ((9, 0), (11, 0)),
    ((9, 0), (12, 0)),
    ((14, 0), (16, 30)),
    ((14, 30), (17, 0)),
    ((15, 0), (17, 0)),
    ((19, 0), (21, 0)),
)
SHIFT_STARTS = ((8, 30), (9, 0), (13, 30), (14, 0), (16, 0))
REJECT_REASONS = (
    "签到后未实际参与服务，经项目负责人核实不予认定",
    "与现场纸质签到表不符，请核实后重新录入",
    "代他人签到签退，不予认定",
    "服务时段与活动安排不符，经核实不予认定",
)


def _words(spaced: str) -> tuple[str, ...]:
    return tuple(spaced.split())


SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
)
GIVEN_NAMES = _words(
    "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 霞 平 刚 秀英 桂英 秀兰 玉兰 建国 建华 "
    "志强 宇 浩然 欣怡 子涵 梓轩 雨桐 晨阳 思远 佳琪 慧 婷 晓东 海燕 文博 秀珍 淑芬 凤英 玉梅 "
    "建军 丽娟 春梅 国强 红梅 德明 淑华 振华 家豪 一鸣 梦瑶 嘉怡 俊杰 雪 鑫 亮 斌 颖 琳 倩"
)
MOBILE_PREFIXES = _words(
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 173 175 "
    "176 177 178 180 181 182 183 184 185 186 187 188 189 191 198 199"
)


# --- The plan ----------------------------------------------------------------------------------


@dataclass
class NeedPlan:
    registrar: str  # the station or a community (its key)
    community: int
    category: str
    target_group: str
    description: str
    urgency: str
    met: bool = False
    id: str = ""


@dataclass
class MemberPlan:
    index: int
    name: str
    phone: str
    birth_date: date
    home: str  # the service organisation that registers the member
    community: int
    weight: float  # how keen: 0 never serves
    id: str = ""
    volunteer_number: str = ""


@dataclass
class ProjectPlan:
    index: int
    kind: ProjectKind
    org: str
    community: int
    title: str
    category: str
    place: str
    starts: datetime
    ends: datetime
    capacity: int = 0
    fixed_minutes: int | None = None
    cap_minutes_per_day: int | None = None
    needs: list[int] = field(default_factory=list)
    id: str = ""


StepKind = Literal["enrol", "signup", "cancel", "visit", "manual"]
STEP_ORDER: dict[StepKind, int] = {"enrol": 0, "signup": 1, "cancel": 2, "visit": 3, "manual": 3}


@dataclass
class Step:
    """One thing a member (or an organisation for them) does, at `at` (simulated time)."""

    at: datetime
    kind: StepKind
    member: int
    project: int
    by_org: bool = False  # a sign-up made by the organisation (its roster), not the member
    leave: datetime | None = None  # visit: check-out time; manual: the end of the service
    entered_end: datetime | None = None  # manual: the (wrong) end first entered, if not `leave`
    reject: str | None = None
    record_id: str = ""


@dataclass
class Plan:
    now: datetime
    tz: ZoneInfo
    needs: list[NeedPlan]
    members: list[MemberPlan]
    projects: list[ProjectPlan]
    steps: list[Step]
    corrected: Step | None  # a manual record entered too short, disputed and replaced
    dismissed: Step | None  # a check-in record disputed, the dispute dismissed


def _at(day: date, hm: tuple[int, int], tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, hm[0], hm[1], tzinfo=tz)


def _minutes(a: datetime, b: datetime) -> int:
    return math.ceil((b - a).total_seconds() / 60)


class _Diary:
    """Each member's planned service, so that no plan breaks the rules."""

    def __init__(self, daily_cap: int, tz: ZoneInfo) -> None:
        self.daily_cap = daily_cap
        self.tz = tz
        self.busy: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
        self.per_day: Counter[tuple[int, date]] = Counter()

    def fits(self, member: int, start: datetime, end: datetime, minutes: int) -> bool:
        gap = timedelta(minutes=10)
        if any(start < b + gap and a < end + gap for a, b in self.busy[member]):
            return False
        day = start.astimezone(self.tz).date()
        return self.per_day[(member, day)] + minutes <= self.daily_cap

    def book(self, member: int, start: datetime, end: datetime, minutes: int) -> None:
        self.busy[member].append((start, end))
        self.per_day[(member, start.astimezone(self.tz).date())] += minutes


def _weighted_order(rng: random.Random, weights: list[float]) -> list[int]:
    """Indices with positive weight in a random order that favours heavy ones."""
    keyed = [(rng.random() ** (1 / w), i) for i, w in enumerate(weights) if w > 0]
    return [i for _, i in sorted(keyed, reverse=True)]


def _project_kind(i: int) -> ProjectKind:
    if i % 7 == 3:
        return "shift"
    if i % 9 == 5:
        return "fixed"
    if i % 5 == 1:
        return "manual"
    return "single"


def build_plan(
    members: int,
    days: int,
    now: datetime,
    tz: ZoneInfo,
    daily_cap: int,
    categories: Iterable[str],
    target_groups: Iterable[str],
) -> Plan:
    """The whole district and its month, from the fixed seed (no I/O)."""
    rng = random.Random(SEED)
    listed, groups = set(categories), set(target_groups)
    today = now.astimezone(tz).date()
    orgs_of: dict[str, list[str]] = defaultdict(list)
    for org in SERVICE_ORGS:
        for category in org.categories:
            orgs_of[category].append(org.key)

    need_templates = [t for t in NEED_TEMPLATES if t[0] in listed and t[1] in groups]
    templates = {
        kind: [t for t in pool if t[1] in listed and orgs_of[t[1]]]
        for kind, pool in PROJECT_TEMPLATES.items()
    }
    if not need_templates or not all(templates.values()):
        raise DemoError("the service catalogue lacks the categories the demo uses")

    # Needs, registered by the station or by the community they arise in.
    n_needs = max(6, round(days * 2 / 3))
    needs = []
    order = rng.sample(need_templates, len(need_templates))
    for i in range(n_needs):
        category, group, description, urgency = order[i % len(order)]
        community = rng.randrange(len(COMMUNITIES))
        registrar = STATION.key if rng.random() < 0.3 else COMMUNITIES[community].key
        needs.append(NeedPlan(registrar, community, category, group, description, urgency))

    # Members: names, unique mobile numbers, ages; the team that registered them.
    people = []
    phones: set[str] = set()
    home_weights = {
        "young": (6, 0.5, 2, 3, 1),
        "middle": (2, 1, 2, 2, 2),
        "senior": (1, 6, 1.5, 1, 2),
    }
    for i in range(members):
        age_group = rng.choices(("young", "middle", "senior"), (25, 35, 40))[0]
        age = {"young": (18, 30), "middle": (31, 55), "senior": (56, 75)}[age_group]
        born = today - timedelta(days=int(rng.randint(*age) * 365.25) + rng.randint(0, 364))
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
        phone = ""
        while not phone or phone in phones:
            phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        phones.add(phone)
        home = rng.choices([o.key for o in SERVICE_ORGS], home_weights[age_group])[0]
        keen = 0.0 if rng.random() < 0.1 else min(6.0, rng.paretovariate(1.3))
        if age_group == "senior":
            keen *= 1.5
        people.append(MemberPlan(i, name, phone, born, home, rng.randrange(len(COMMUNITIES)), keen))

    diary = _Diary(daily_cap, tz)
    steps: list[Step] = []
    projects: list[ProjectPlan] = []
    linked: set[int] = set()
    n_past = max(6, days)
    # More activities at weekends; some days have two, some none.
    day_weights = [
        2.0 if (today - timedelta(days=ago)).weekday() >= 5 else 1.0 for ago in range(1, days + 1)
    ]
    agos = sorted(rng.choices(range(1, days + 1), day_weights, k=n_past), reverse=True)

    def new_project(i: int, kind: ProjectKind, starts: datetime, ends: datetime) -> ProjectPlan:
        title, category, place = rng.choice(templates[kind])
        community = rng.randrange(len(COMMUNITIES))
        project = ProjectPlan(
            i,
            kind,
            rng.choice(orgs_of[category]),
            community,
            title,
            category,
            place.format(c=COMMUNITIES[community].name),
            starts,
            ends,
        )
        open_needs = [n for n, need in enumerate(needs) if need.category == category]
        open_needs = [n for n in open_needs if n not in linked]
        open_needs.sort(key=lambda n: needs[n].community != community)
        if open_needs and rng.random() < 0.85:
            project.needs.append(open_needs[0])
            linked.add(open_needs[0])
        return project

    def is_past(project: ProjectPlan) -> bool:
        return project.ends < now

    def keen_order(project: ProjectPlan) -> list[int]:
        weights = []
        for m in people:
            w = m.weight * (2.0 if m.community == project.community else 1.0)
            if project.kind == "manual" and m.home == project.org:
                w *= 3.0
            weights.append(w)
        return _weighted_order(rng, weights)

    def sign_up(project: ProjectPlan, member: int, at: datetime) -> None:
        by_org = project.kind == "manual"
        if by_org and people[member].home != project.org:
            steps.append(Step(at - timedelta(minutes=5), "enrol", member, project.index))
        steps.append(Step(at, "signup", member, project.index, by_org=by_org))

    def scaled(low: int, high: int) -> int:
        return min(rng.randint(low, high), max(3, members // 4))

    for i in range(n_past):
        kind = _project_kind(i)
        ago = agos[i]
        first = today - timedelta(days=ago)
        if kind == "shift" and ago < 2:
            kind = "single"
        if kind == "shift":
            span = min(rng.randint(3, 5), ago)
            project = new_project(
                i, kind, _at(first, (8, 0), tz), _at(first + timedelta(days=span - 1), (20, 0), tz)
            )
            project.cap_minutes_per_day = rng.choice((180, 240))
        else:
            slot = rng.choice(SLOTS)
            project = new_project(i, kind, _at(first, slot[0], tz), _at(first, slot[1], tz))
            if kind == "fixed":
                window = _minutes(project.starts, project.ends)
                project.fixed_minutes = min(window, rng.choice((60, 90, 120)))
        projects.append(project)

        signed: list[int] = []
        wanted = scaled(8, 16) if kind == "shift" else scaled(8, 26)
        for member in keen_order(project):
            if len(signed) >= wanted:
                break
            visits = _plan_visits(rng, project, tz)
            planned = []
            for start, end, credit in visits:
                if diary.fits(member, start, end, credit):
                    planned.append((start, end, credit))
            if not planned or (kind != "shift" and len(planned) < len(visits)):
                continue
            for start, end, credit in planned:
                diary.book(member, start, end, credit)
                step_kind: StepKind = "manual" if kind == "manual" else "visit"
                steps.append(Step(start, step_kind, member, i, leave=end))
            signed.append(member)
        # A few signed up and did not come.
        no_shows: list[int] = []
        if kind in ("single", "fixed"):
            others = [m for m in keen_order(project) if m not in signed]
            no_shows = others[: max(0, round(len(signed) * 0.1))]
        for member in signed + no_shows:
            sign_up(project, member, project.starts - timedelta(minutes=rng.randint(120, 96 * 60)))
        spare = 0 if rng.random() < 0.25 else rng.randint(2, 10)
        project.capacity = max(1, len(signed) + len(no_shows) + spare)

    # Two projects coming up: sign-ups now, one place given back in each.
    for j in range(2):
        day = today + timedelta(days=rng.randint(2, 6))
        slot = rng.choice(SLOTS)
        project = new_project(n_past + j, "single", _at(day, slot[0], tz), _at(day, slot[1], tz))
        projects.append(project)
        takers = keen_order(project)[: scaled(4, 12)]
        for member in takers:
            steps.append(Step(now, "signup", member, project.index))
        if takers:
            steps.append(Step(now + timedelta(seconds=1), "cancel", takers[-1], project.index))
        project.capacity = len(takers) + rng.randint(5, 15)

    # Half the needs that past projects addressed are met (at least one).
    served = [n for p in projects if is_past(p) for n in p.needs]
    for n in served:
        needs[n].met = rng.random() < 0.5
    if served and not any(needs[n].met for n in served):
        needs[served[0]].met = True

    # Some check-ins are rejected; one manual record and one check-in record get disputed.
    checkins = [s for s in steps if s.kind == "visit"]
    for step in rng.sample(checkins, min(len(checkins), 6, max(1, len(checkins) // 100))):
        step.reject = rng.choice(REJECT_REASONS)
    manual = [
        s
        for s in steps
        if s.kind == "manual" and s.leave and s.leave - s.at >= timedelta(minutes=90)
    ]
    corrected = rng.choice(manual) if manual else None
    if corrected is not None and corrected.leave is not None:
        corrected.entered_end = corrected.leave - timedelta(hours=1)
    approved_visits = [s for s in checkins if s.reject is None]
    dismissed = rng.choice(approved_visits) if approved_visits else None
    return Plan(now, tz, needs, people, projects, steps, corrected, dismissed)


def _plan_visits(
    rng: random.Random, project: ProjectPlan, tz: ZoneInfo
) -> list[tuple[datetime, datetime, int]]:
    """When one member arrives and leaves (or, by hand, starts and ends), with an upper bound
    of the minutes it credits."""
    seconds = timedelta(seconds=rng.randint(0, 59))
    if project.kind == "manual":
        start = project.starts + timedelta(minutes=rng.randint(0, 10))
        end = project.ends - timedelta(minutes=rng.randint(0, 10))
        return [(start, end, _minutes(start, end))]
    if project.kind == "shift":
        cap = project.cap_minutes_per_day or 240
        first = project.starts.astimezone(tz).date()
        span = (project.ends.astimezone(tz).date() - first).days + 1
        chosen = rng.sample(range(span), rng.randint(1, min(3, span)))
        out = []
        for offset in sorted(chosen):
            begin = _at(first + timedelta(days=offset), rng.choice(SHIFT_STARTS), tz)
            length = min(rng.choice((120, 150, 180)), cap - 25)
            arrive = begin - timedelta(minutes=rng.randint(0, 10)) + seconds
            leave = begin + timedelta(minutes=length + rng.randint(0, 10)) + seconds
            out.append((arrive, leave, _minutes(arrive, leave)))
        return out
    if rng.random() < 0.15:
        arrive = project.starts + timedelta(minutes=rng.randint(1, 25))
    else:
        arrive = project.starts - timedelta(minutes=rng.randint(0, 20))
    if rng.random() < 0.15:
        leave = project.ends - timedelta(minutes=rng.randint(10, 40))
    else:
        leave = project.ends + timedelta(minutes=rng.randint(0, 10))
    arrive, leave = arrive + seconds, leave + timedelta(seconds=rng.randint(0, 59))
    credit = _minutes(max(arrive, project.starts), min(leave, project.ends))
    return [(arrive, leave, max(credit, project.fixed_minutes or 0))]


# --- Playing the plan --------------------------------------------------------------------------

# The simulated moment of the request in flight (unset: the real time).
_NOW: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("demo_now", default=None)


def _demo_clock() -> datetime:
    moment = _NOW.get()
    return utc_now() if moment is None else moment.astimezone(UTC)


def _no_progress(name: str, total: int) -> Advance:
    return lambda n: None


async def _limited(
    coros: Iterable[Coroutine[Any, Any, Any]], limit: int = CONCURRENCY
) -> list[Any]:
    """Run coroutines at most `limit` at a time; the first failure cancels the others and is
    raised as itself."""
    gate = asyncio.Semaphore(limit)

    async def run(coro: Coroutine[Any, Any, Any]) -> Any:
        async with gate:
            return await coro

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(c)) for c in coros]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class _Seeder:
    """Plays the plan through the API, as each of the district's callers."""

    plan: Plan  # made once the book is open and the catalogue read

    def __init__(self, client: httpx.AsyncClient, admin_token: str, progress: PhaseStart) -> None:
        self.client = client
        self.progress = progress
        self.tokens: dict[str, str] = {"admin": admin_token}
        self.orgs: dict[str, str] = {}

    async def call(
        self,
        method: str,
        path: str,
        who: str,
        body: Any = None,
        member: MemberPlan | None = None,
        at: datetime | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if member is not None:
            headers["X-Member-Id"] = member.id
        if method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4().hex}"
        moment = _NOW.set(at)
        try:
            answer = await self.client.request(method, path, json=body, headers=headers)
        finally:
            _NOW.reset(moment)
        if answer.status_code not in (200, 201):
            raise DemoError(f"{method} {path} as {who}: {answer.status_code} {answer.text}")
        return answer.json()

    # The district's bodies.

    async def open_book(self, members: int, days: int, settings: Settings) -> None:
        """Open the book, read the service catalogue and plan the district."""
        body = {"code": DEMO_BOOK, "name": DEMO_BOOK_NAME}
        await self.call("POST", "/v1/books", "admin", body)
        catalog = await self.call("GET", "/v1/service-catalog", "admin")
        self.plan = build_plan(
            members,
            days,
            utc_now(),
            ZoneInfo(settings.service_timezone),
            settings.service_daily_cap_minutes,
            (c["code"] for c in catalog["categories"]),
            (g["code"] for g in catalog["target_groups"]),
        )

    async def organisations(self) -> None:
        async def create(spec: OrgSpec, parent: str | None, issuance: bool) -> None:
            body: dict[str, Any] = {
                "book": DEMO_BOOK,
                "kind": spec.kind,
                "name": spec.name,
                "person_in_charge": spec.person_in_charge,
                "maker_checker": spec.maker_checker,
            }
            if parent is not None:
                body["parent_id"] = parent
            if issuance:
                body["accounts"] = [
                    {"asset": "HOUR", "purpose": "issuance", "overdraft_limit": 10**9}
                ]
            created = await self.call("POST", "/v1/organisations", "admin", body)
            self.orgs[spec.key] = created["id"]

        await create(STATION, None, False)
        station = self.orgs[STATION.key]
        for spec in COMMUNITIES:
            await create(spec, station, False)
        for spec in SERVICE_ORGS:
            await create(spec, station, True)
        await create(KIOSK, station, False)

    async def grant_credentials(self) -> None:
        grants: list[tuple[str, str, str | None, str]] = [
            (STATION.key, "org", STATION.key, f"{STATION.name} 工作站"),
            *((c.key, "org", c.key, f"{c.name} 居委会") for c in COMMUNITIES),
        ]
        for spec in SERVICE_ORGS:
            grants.append((spec.key, "org", spec.key, f"{spec.name} 录入"))
            grants.append((f"{spec.key}:review", "org", spec.key, f"{spec.name} 审核"))
        grants += [
            (KIOSK.key, "kiosk", KIOSK.key, f"{KIOSK.name} 收银台"),
            ("mini", "miniprogram", None, "志愿者小程序"),
            ("auditor", "auditor", None, "民政审计"),
        ]
        for who, role, org, name in grants:
            body: dict[str, Any] = {"role": role, "book": DEMO_BOOK, "name": name}
            if org is not None:
                body["organisation_id"] = self.orgs[org]
            created = await self.call("POST", "/v1/credentials", "admin", body)
            self.tokens[who] = created["token"]

    async def needs(self) -> None:
        advance = self.progress("needs", len(self.plan.needs))

        async def register(need: NeedPlan) -> None:
            body = {
                "book": DEMO_BOOK,
                "community_id": self.orgs[COMMUNITIES[need.community].key],
                "category": need.category,
                "target_group": need.target_group,
                "description": need.description,
                "urgency": need.urgency,
            }
            need.id = (await self.call("POST", "/v1/needs", need.registrar, body))["id"]
            advance(1)

        await _limited(register(n) for n in self.plan.needs)

    async def members(self) -> None:
        advance = self.progress("members", len(self.plan.members))

        async def register(m: MemberPlan) -> None:
            body = {
                "book": DEMO_BOOK,
                "display_name": m.name,
                "phone": m.phone,
                "birth_date": m.birth_date.isoformat(),
                "identity": {"provider": "wechat", "subject": f"o_demo_{SEED}_{m.index:06d}"},
            }
            created = await self.call("POST", "/v1/members", m.home, body)
            m.id, m.volunteer_number = created["id"], created["volunteer_number"]
            await self.enrol(m, COMMUNITIES[m.community].key)
            advance(1)

        await _limited(register(m) for m in self.plan.members)

    async def enrol(self, member: MemberPlan, org: str) -> None:
        """The member's consent through the mini-program (an enrolment code), then the
        organisation enrols them with it."""
        path = f"/v1/members/{member.id}/enrolment-codes"
        code = (await self.call("POST", path, "mini", member=member))["code"]
        body = {"enrolment_code": code, "volunteer_number": member.volunteer_number}
        await self.call("POST", f"/v1/organisations/{self.orgs[org]}/members", org, body)

    async def projects(self) -> None:
        advance = self.progress("projects", len(self.plan.projects))

        async def publish(p: ProjectPlan) -> None:
            body: dict[str, Any] = {
                "book": DEMO_BOOK,
                "community_id": self.orgs[COMMUNITIES[p.community].key],
                "title": p.title,
                "category": p.category,
                "place": p.place,
                "starts_at": p.starts.isoformat(),
                "ends_at": p.ends.isoformat(),
                "capacity": p.capacity,
                "need_ids": [self.plan.needs[n].id for n in p.needs],
            }
            if p.fixed_minutes is not None:
                body |= {"credit_policy": "fixed", "fixed_minutes": p.fixed_minutes}
            if p.cap_minutes_per_day is not None:
                body["cap_minutes_per_day"] = p.cap_minutes_per_day
            p.id = (await self.call("POST", "/v1/projects", p.org, body))["id"]
            advance(1)

        await _limited(publish(p) for p in self.plan.projects)

    # Service.

    async def _step(self, step: Step) -> None:
        plan = self.plan
        member = plan.members[step.member]
        project = plan.projects[step.project]
        org = project.org
        if step.kind == "enrol":
            await self.enrol(member, org)
        elif step.kind == "signup":
            path = f"/v1/projects/{project.id}/signups"
            if step.by_org:
                await self.call("POST", path, org, {"member_id": member.id}, at=step.at)
            else:
                await self.call("POST", path, "mini", member=member, at=step.at)
        elif step.kind == "cancel":
            path = f"/v1/projects/{project.id}/signups/{member.id}"
            await self.call("DELETE", path, "mini", member=member, at=step.at)
        elif step.kind == "visit":
            assert step.leave is not None
            code_path = f"/v1/projects/{project.id}/checkin-code"
            code = (await self.call("GET", code_path, org, at=step.at))["code"]
            record = await self.call(
                "POST",
                f"/v1/projects/{project.id}/checkin",
                "mini",
                {"code": code},
                member=member,
                at=step.at,
            )
            step.record_id = record["id"]
            code = (await self.call("GET", code_path, org, at=step.leave))["code"]
            await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/checkout",
                "mini",
                {"code": code},
                member=member,
                at=step.leave,
            )
            if step.reject is not None:
                await self.call(
                    "POST",
                    f"/v1/service-records/{step.record_id}/reject",
                    f"{org}:review",
                    {"reason": step.reject},
                    at=step.leave,
                )
        else:
            assert step.leave is not None
            record = await self.manual(step, step.entered_end or step.leave)
            step.record_id = record["id"]

    async def manual(self, step: Step, end: datetime, corrects: str | None = None) -> Any:
        org = self.plan.projects[step.project].org
        body: dict[str, Any] = {
            "project_id": self.plan.projects[step.project].id,
            "member_id": self.plan.members[step.member].id,
            "started_at": step.at.isoformat(),
            "ended_at": end.isoformat(),
            "attested_by": next(o.person_in_charge for o in SERVICE_ORGS if o.key == org),
        }
        if corrects is not None:
            body["corrects_record_id"] = corrects
        return await self.call("POST", "/v1/service-records", org, body, at=end)

    async def service(self) -> None:
        by_member: dict[int, list[Step]] = defaultdict(list)
        for step in self.plan.steps:
            by_member[step.member].append(step)
        advance = self.progress("service", len(self.plan.steps))

        async def live(steps: list[Step]) -> None:
            for step in sorted(steps, key=lambda s: (s.at, STEP_ORDER[s.kind])):
                await self._step(step)
                advance(1)

        await _limited(live(steps) for _, steps in sorted(by_member.items()))

    async def approvals(self) -> None:
        pending: dict[str, list[str]] = defaultdict(list)
        for step in self.plan.steps:
            if step.record_id and step.reject is None:
                pending[self.plan.projects[step.project].org].append(step.record_id)
        advance = self.progress("approvals", sum(len(ids) for ids in pending.values()))

        async def approve(org: str, ids: list[str]) -> None:
            reviewer = f"{org}:review"
            # The first few one by one, as they came in; the rest in bulk, as at month's end.
            for record_id in ids[:3]:
                await self.call("POST", f"/v1/service-records/{record_id}/approve", reviewer)
                advance(1)
            for start in range(3, len(ids), BULK_APPROVE_BATCH):
                batch = ids[start : start + BULK_APPROVE_BATCH]
                answer = await self.call(
                    "POST", "/v1/service-records/approve", reviewer, {"record_ids": batch}
                )
                if answer["refused"]:
                    refused = [r for r in answer["results"] if r["status"] != 200]
                    raise DemoError(f"bulk approval refused {refused[:3]}")
                advance(len(batch))

        await _limited(approve(org, ids) for org, ids in sorted(pending.items()))

    async def disputes(self) -> None:
        plan = self.plan
        step = plan.corrected
        if step is not None and step.leave is not None:
            org = plan.projects[step.project].org
            member = plan.members[step.member]
            local_end = step.leave.astimezone(plan.tz).strftime("%H:%M")
            dispute = await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/disputes",
                "mini",
                {"reason": f"我当天一直服务到{local_end}，记录少了一个小时"},
                member=member,
            )
            await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/reverse",
                f"{org}:review",
                {"reason": "录入时结束时间填错，少记一小时"},
            )
            fixed = await self.manual(step, step.leave, corrects=step.record_id)
            await self.call("POST", f"/v1/service-records/{fixed['id']}/approve", f"{org}:review")
            await self.call(
                "POST",
                f"/v1/service-disputes/{dispute['id']}/answer",
                f"{org}:review",
                {
                    "outcome": "upheld",
                    "answer": "已核对纸质签到表，按实际服务时长更正",
                    "corrected_record_id": fixed["id"],
                },
            )
        step = plan.dismissed
        if step is not None:
            org = plan.projects[step.project].org
            dispute = await self.call(
                "POST",
                f"/v1/service-records/{step.record_id}/disputes",
                "mini",
                {"reason": "签退时手机没电，实际服务到活动结束"},
                member=plan.members[step.member],
            )
            await self.call(
                "POST",
                f"/v1/service-disputes/{dispute['id']}/answer",
                f"{org}:review",
                {
                    "outcome": "dismissed",
                    "answer": "经核对签到签退记录并向现场负责人确认，记录无误",
                },
            )

    async def needs_met(self) -> None:
        await _limited(
            self.call("PATCH", f"/v1/needs/{need.id}", need.registrar, {"status": "met"})
            for need in self.plan.needs
            if need.met
        )


async def district_summary(
    sessions: async_sessionmaker[AsyncSession], book: str = DEMO_BOOK
) -> dict[str, Any]:
    """What the book holds: its head, and counts of the district's organisations, members,
    needs, projects, sign-ups, records by status, disputes and certified minutes."""

    async def counts(session: AsyncSession, query: str) -> dict[str, int]:
        rows = await session.execute(text(query), {"b": book})
        return {str(r[0]): int(r[1]) for r in rows}

    async with sessions() as session, session.begin():
        head = (
            await session.execute(
                text(
                    "SELECT b.code, b.name, b.created_at, h.seq, h.entry_hash FROM books b "
                    "JOIN book_heads h ON h.book_code = b.code WHERE b.code = :b"
                ),
                {"b": book},
            )
        ).one()
        one = "SELECT '', count(*) FROM {} WHERE book_code = :b"
        records = await counts(
            session,
            "SELECT status, count(*) FROM service_records WHERE book_code = :b GROUP BY status",
        )
        minutes = await session.scalar(
            text(
                "SELECT coalesce(sum(credited_minutes), 0) FROM service_records "
                "WHERE book_code = :b AND status = 'approved'"
            ),
            {"b": book},
        )
        return {
            "book": {
                "code": head.code,
                "name": head.name,
                "created_at": head.created_at.isoformat(),
                "head": {"seq": head.seq, "entry_hash": head.entry_hash},
            },
            "organisations": await counts(
                session,
                "SELECT kind, count(*) FROM organisations WHERE book_code = :b "
                "GROUP BY kind ORDER BY kind",
            ),
            "credentials": (
                await counts(session, one.format("credentials") + " AND revoked_at IS NULL")
            ).get("", 0),
            "members": (await counts(session, one.format("members"))).get("", 0),
            "needs": await counts(
                session,
                "SELECT status, count(*) FROM needs WHERE book_code = :b "
                "GROUP BY status ORDER BY status",
            ),
            "projects": (await counts(session, one.format("projects"))).get("", 0),
            "signups": (
                await counts(
                    session,
                    "SELECT '', count(*) FROM signups s JOIN projects p ON p.id = s.project_id "
                    "WHERE p.book_code = :b AND s.status = 'active'",
                )
            ).get("", 0),
            "records": dict(sorted(records.items())),
            "disputes": await counts(
                session,
                "SELECT d.status, count(*) FROM service_disputes d JOIN service_records r "
                "ON r.id = d.record_id WHERE r.book_code = :b GROUP BY d.status "
                "ORDER BY d.status",
            ),
            "certified_minutes": int(minutes or 0),
            "head_seq": head.seq,
        }


async def seed_demo(
    settings: Settings,
    members: int = 300,
    days: int = 30,
    progress: PhaseStart | None = None,
) -> dict[str, Any]:
    """Seed the demo district once (through the API, in-process); later runs report it.

    `settings.database_url` names the (migrated) database. Rate limits are off for the
    seeding's own credentials: they are this process's.
    """
    from app.main import create_app

    progress = progress or _no_progress
    started = time.monotonic()
    app = create_app(settings.model_copy(update={"rate_limit_per_s": 0.0}))
    async with app.router.lifespan_context(app):
        sessions = app.state.sessions
        async with sessions() as session:
            exists = await session.scalar(
                text("SELECT 1 FROM books WHERE code = :b"), {"b": DEMO_BOOK}
            )
        if exists:
            return {**await district_summary(sessions), "created": False}
        async with sessions() as session, session.begin():
            admin, token = await create_credential(session, "admin", name="timebank demo")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://demo.timebank", timeout=120
        ) as client:
            original_clock = app.state.clock
            app.state.clock = _demo_clock
            seeder = _Seeder(client, token, progress)
            try:
                await seeder.open_book(members, days, settings)
                await seeder.organisations()
                await seeder.grant_credentials()
                await seeder.needs()
                await seeder.members()
                await seeder.projects()
                await seeder.service()
                await seeder.approvals()
                await seeder.disputes()
                await seeder.needs_met()
            except DemoError as exc:
                raise DemoError(f"{exc} (book {DEMO_BOOK!r} is left partly seeded)") from exc
            finally:
                app.state.clock = original_clock
                # The seeding's platform credential ends with it (its token was never shown);
                # best effort: a failure of its own must not hide the seeding's.
                with contextlib.suppress(Exception):
                    await seeder.call("POST", f"/v1/credentials/{admin['id']}/revoke", "admin")
        summary = await district_summary(sessions)
    return {**summary, "created": True, "seconds": round(time.monotonic() - started, 1)}
