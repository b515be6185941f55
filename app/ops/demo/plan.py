"""The demo's planner (pure, no I/O): the district's needs, members, projects and every step of
its month, drawn from `random.Random(SEED)` with times relative to `now`, so that the same
arguments give the same plan and every request it makes obeys the service rules (windows, no
overlaps, the daily caps)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from app.ops.demo.district import (
    COMMUNITIES,
    GIVEN_NAMES,
    MOBILE_PREFIXES,
    NEED_TEMPLATES,
    PROJECT_TEMPLATES,
    REJECT_REASONS,
    SEED,
    SERVICE_ORGS,
    SHIFT_STARTS,
    SLOTS,
    STATION,
    SURNAMES,
    ProjectKind,
)

# How members' ages are drawn, and how likely each age group joins each service organisation
# (in SERVICE_ORGS' order).
AGE_GROUPS = {"young": (18, 30), "middle": (31, 55), "senior": (56, 75)}
HOME_WEIGHTS = {
    "young": (6, 0.5, 2, 3, 1),
    "middle": (2, 1, 2, 2, 2),
    "senior": (1, 6, 1.5, 1, 2),
}
# A need or project template: (category, ...) as in district.py.
NeedTemplate = tuple[str, str, str, str]
ProjectTemplate = tuple[str, str, str]


class DemoError(RuntimeError):
    """A seeding step the service refused (the plan is wrong, or the service changed)."""


@dataclass
class NeedPlan:
    """A need a resident has, as the station or a community registers it."""

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
    """A member to register, and (once registered) their id and volunteer number."""

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
    """A service project to publish, and (once published) its id."""

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
    """The district and its month: what the seeder plays through the API."""

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
    # Every draw from `rng` happens in one fixed order (needs, members, past projects, coming
    # projects, needs met, rejections and disputes): the plan depends on that order.
    rng = random.Random(SEED)
    today = now.astimezone(tz).date()
    need_templates, templates = _templates(set(categories), set(target_groups))
    needs = _plan_needs(rng, need_templates, days)
    people = _plan_members(rng, members, today)
    month = _Month(rng, now, tz, _Diary(daily_cap, tz), templates, needs, people)
    n_past = max(6, days)
    for i, ago in enumerate(_past_days(rng, today, days, n_past)):
        month.past_project(i, ago)
    # Two projects coming up: sign-ups now, one place given back in each.
    for j in range(2):
        month.coming_project(n_past + j)
    _mark_needs_met(rng, needs, month.projects, now)
    corrected, dismissed = _rejections_and_disputes(rng, month.steps)
    return Plan(now, tz, needs, people, month.projects, month.steps, corrected, dismissed)


def _orgs_of(category: str) -> list[str]:
    """The service organisations that serve a category, in SERVICE_ORGS' order."""
    return [org.key for org in SERVICE_ORGS if category in org.categories]


def _templates(
    listed: set[str], groups: set[str]
) -> tuple[list[NeedTemplate], dict[ProjectKind, list[ProjectTemplate]]]:
    """The need and project templates whose category (and target group) the service lists and
    some organisation serves; refused if any kind of project would have none."""
    need_templates = [t for t in NEED_TEMPLATES if t[0] in listed and t[1] in groups]
    templates = {
        kind: [t for t in pool if t[1] in listed and _orgs_of(t[1])]
        for kind, pool in PROJECT_TEMPLATES.items()
    }
    if not need_templates or not all(templates.values()):
        raise DemoError("the service catalogue lacks the categories the demo uses")
    return need_templates, templates


def _plan_needs(rng: random.Random, templates: list[NeedTemplate], days: int) -> list[NeedPlan]:
    """Needs, registered by the station or by the community they arise in."""
    needs = []
    order = rng.sample(templates, len(templates))
    for i in range(max(6, round(days * 2 / 3))):
        category, group, description, urgency = order[i % len(order)]
        community = rng.randrange(len(COMMUNITIES))
        registrar = STATION.key if rng.random() < 0.3 else COMMUNITIES[community].key
        needs.append(NeedPlan(registrar, community, category, group, description, urgency))
    return needs


def _plan_members(rng: random.Random, members: int, today: date) -> list[MemberPlan]:
    """Members: names, unique mobile numbers, ages; the team that registered them."""
    people = []
    phones: set[str] = set()
    for i in range(members):
        age_group = rng.choices(("young", "middle", "senior"), (25, 35, 40))[0]
        age = AGE_GROUPS[age_group]
        born = today - timedelta(days=int(rng.randint(*age) * 365.25) + rng.randint(0, 364))
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
        phone = ""
        while not phone or phone in phones:
            phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        phones.add(phone)
        home = rng.choices([o.key for o in SERVICE_ORGS], HOME_WEIGHTS[age_group])[0]
        keen = 0.0 if rng.random() < 0.1 else min(6.0, rng.paretovariate(1.3))
        if age_group == "senior":
            keen *= 1.5
        people.append(MemberPlan(i, name, phone, born, home, rng.randrange(len(COMMUNITIES)), keen))
    return people


def _past_days(rng: random.Random, today: date, days: int, count: int) -> list[int]:
    """How many days ago each past project ran, earliest first: more activities at weekends;
    some days have two, some none."""
    day_weights = [
        2.0 if (today - timedelta(days=ago)).weekday() >= 5 else 1.0 for ago in range(1, days + 1)
    ]
    return sorted(rng.choices(range(1, days + 1), day_weights, k=count), reverse=True)


class _Month:
    """The projects of the month and every member's steps in them, planned one project at a
    time against each member's diary."""

    def __init__(
        self,
        rng: random.Random,
        now: datetime,
        tz: ZoneInfo,
        diary: _Diary,
        templates: dict[ProjectKind, list[ProjectTemplate]],
        needs: list[NeedPlan],
        people: list[MemberPlan],
    ) -> None:
        self.rng, self.now, self.tz, self.diary = rng, now, tz, diary
        self.today = now.astimezone(tz).date()
        self.templates, self.needs, self.people = templates, needs, people
        self.steps: list[Step] = []
        self.projects: list[ProjectPlan] = []
        self.linked: set[int] = set()  # needs a project already answers

    def new_project(
        self, i: int, kind: ProjectKind, starts: datetime, ends: datetime
    ) -> ProjectPlan:
        """A project from a template, run by an organisation that serves its category, linked
        (most of the time) to an open need of that category, its own community's first."""
        rng = self.rng
        title, category, place = rng.choice(self.templates[kind])
        community = rng.randrange(len(COMMUNITIES))
        project = ProjectPlan(
            i,
            kind,
            rng.choice(_orgs_of(category)),
            community,
            title,
            category,
            place.format(c=COMMUNITIES[community].name),
            starts,
            ends,
        )
        open_needs = [n for n, need in enumerate(self.needs) if need.category == category]
        open_needs = [n for n in open_needs if n not in self.linked]
        open_needs.sort(key=lambda n: self.needs[n].community != community)
        if open_needs and rng.random() < 0.85:
            project.needs.append(open_needs[0])
            self.linked.add(open_needs[0])
        return project

    def keen_order(self, project: ProjectPlan) -> list[int]:
        """Members in the order they come forward: the keen first, more so from the project's
        community and, for a project recorded by hand, from the organisation's own members."""
        weights = []
        for m in self.people:
            w = m.weight * (2.0 if m.community == project.community else 1.0)
            if project.kind == "manual" and m.home == project.org:
                w *= 3.0
            weights.append(w)
        return _weighted_order(self.rng, weights)

    def sign_up(self, project: ProjectPlan, member: int, at: datetime) -> None:
        """The member's sign-up (by the organisation, which first enrols an outsider, for a
        project recorded by hand)."""
        by_org = project.kind == "manual"
        if by_org and self.people[member].home != project.org:
            self.steps.append(Step(at - timedelta(minutes=5), "enrol", member, project.index))
        self.steps.append(Step(at, "signup", member, project.index, by_org=by_org))

    def scaled(self, low: int, high: int) -> int:
        """A head count between `low` and `high`, at most a quarter of the members (3 or more)."""
        return min(self.rng.randint(low, high), max(3, len(self.people) // 4))

    def past_project(self, i: int, ago: int) -> None:
        """A project that ran `ago` days ago, its service and its sign-ups."""
        project = self._open_past(i, ago)
        self.projects.append(project)
        signed = self._serve(project)
        self._sign_up_all(project, signed)

    def _open_past(self, i: int, ago: int) -> ProjectPlan:
        rng, tz = self.rng, self.tz
        kind = _project_kind(i)
        first = self.today - timedelta(days=ago)
        if kind == "shift" and ago < 2:
            kind = "single"
        if kind == "shift":
            span = min(rng.randint(3, 5), ago)
            last = first + timedelta(days=span - 1)
            project = self.new_project(i, kind, _at(first, (8, 0), tz), _at(last, (20, 0), tz))
            project.cap_minutes_per_day = rng.choice((180, 240))
            return project
        slot = rng.choice(SLOTS)
        project = self.new_project(i, kind, _at(first, slot[0], tz), _at(first, slot[1], tz))
        if kind == "fixed":
            window = _minutes(project.starts, project.ends)
            project.fixed_minutes = min(window, rng.choice((60, 90, 120)))
        return project

    def _serve(self, project: ProjectPlan) -> list[int]:
        """The members who served the project, each on every visit it has (some visits of a
        shift will do), booked in their diaries; returns them."""
        signed: list[int] = []
        shift = project.kind == "shift"
        wanted = self.scaled(8, 16) if shift else self.scaled(8, 26)
        step_kind: StepKind = "manual" if project.kind == "manual" else "visit"
        for member in self.keen_order(project):
            if len(signed) >= wanted:
                break
            visits = _plan_visits(self.rng, project, self.tz)
            planned = [v for v in visits if self.diary.fits(member, *v)]
            if not planned or (not shift and len(planned) < len(visits)):
                continue
            for start, end, credit in planned:
                self.diary.book(member, start, end, credit)
                self.steps.append(Step(start, step_kind, member, project.index, leave=end))
            signed.append(member)
        return signed

    def _sign_up_all(self, project: ProjectPlan, signed: list[int]) -> None:
        """Sign-ups before the project for those who served and a few who did not come; its
        capacity, with some places to spare."""
        rng = self.rng
        no_shows: list[int] = []
        if project.kind in ("single", "fixed"):
            others = [m for m in self.keen_order(project) if m not in signed]
            no_shows = others[: max(0, round(len(signed) * 0.1))]
        for member in signed + no_shows:
            self.sign_up(
                project, member, project.starts - timedelta(minutes=rng.randint(120, 96 * 60))
            )
        spare = 0 if rng.random() < 0.25 else rng.randint(2, 10)
        project.capacity = max(1, len(signed) + len(no_shows) + spare)

    def coming_project(self, i: int) -> None:
        """A project in the next days: sign-ups now, and the last taker's place given back."""
        rng, tz = self.rng, self.tz
        day = self.today + timedelta(days=rng.randint(2, 6))
        slot = rng.choice(SLOTS)
        project = self.new_project(i, "single", _at(day, slot[0], tz), _at(day, slot[1], tz))
        self.projects.append(project)
        takers = self.keen_order(project)[: self.scaled(4, 12)]
        for member in takers:
            self.steps.append(Step(self.now, "signup", member, project.index))
        if takers:
            cancel_at = self.now + timedelta(seconds=1)
            self.steps.append(Step(cancel_at, "cancel", takers[-1], project.index))
        project.capacity = len(takers) + rng.randint(5, 15)


def _mark_needs_met(
    rng: random.Random, needs: list[NeedPlan], projects: list[ProjectPlan], now: datetime
) -> None:
    """Half the needs that past projects addressed are met (at least one)."""
    served = [n for p in projects if p.ends < now for n in p.needs]
    for n in served:
        needs[n].met = rng.random() < 0.5
    if served and not any(needs[n].met for n in served):
        needs[served[0]].met = True


def _rejections_and_disputes(
    rng: random.Random, steps: list[Step]
) -> tuple[Step | None, Step | None]:
    """Some check-ins are rejected; one manual record (entered an hour short, to be corrected)
    and one approved check-in record (its dispute dismissed) are chosen to be disputed."""
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
    return corrected, dismissed


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
