"""`GET /at-risk`: which running timers breach next, across the whole group (#24).

Any worker answers for the whole group: it answers for the partitions it owns
(`worker.tasks.at_risk`, from each partition's due index, never a scan of all tickets),
asks every other member of the group (their addresses come with each assignment,
`worker.kafka.assignment`) for theirs, in parallel, and merges the rows by remaining
business time. The instant is fixed by the worker asked and sent along (`at`), so every
worker computes the remaining times as of the same instant and the merged order is the
one any worker would give.

**Never silently fewer rows.** Each worker says which partitions it answered for; the
partitions nobody answered for (a member that did not answer in time, one being
restored, one between owners during a rebalance) are listed in `missing_partitions`
and the answer says `partial: true`. Partitions a worker is restoring are listed in
`restoring_partitions` too. When two workers claim one partition (a rebalance seen at
different instants) the rows and counts of one claimant only are taken.

A forwarded request (header `X-SLA-Forwarded`) is answered from the worker's own
partitions and never forwarded again; it carries the API token on, like `/tickets`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from worker.core.durations import format_duration, parse_duration
from worker.core.errors import SlaWorkerError
from worker.core.events import METRICS
from worker.core.policy import Policy
from worker.tasks.at_risk import (
    DEFAULT_LIMIT,
    DEFAULT_WITHIN,
    MAX_LIMIT,
    AtRiskAnswer,
    AtRiskQuery,
    AtRiskRow,
    answer,
    due_soon,
    merge,
    warm,
)

if TYPE_CHECKING:
    from worker.tasks.partition import Partition

FORWARDED = "X-SLA-Forwarded"
COMPACT = "X-SLA-At-Risk-Rows"
"""Set to `compact` on a forwarded request: answer the rows as arrays of plain numbers and
strings (`compact_row`), which cost a fraction of the public form to write and read.
A worker of an earlier version ignores the header and answers the public form, which
`WorkerAnswer.from_json` reads too (a rolling upgrade keeps whole answers)."""
PEER_TIMEOUT_SECONDS = 3.0
"""How long the worker asked waits for the others; who has not answered by then is
listed as missing (a board polling every second must not hang on one dead member)."""
MAX_WITHIN = timedelta(days=366)
WARM_WITHIN = timedelta(hours=4)
"""The summaries kept warm: breached timers, and those due within this (the due-soon
gauge's widest window; the board's default is one hour)."""
WARM_SLICE_SECONDS = 0.02
WARM_PAUSE_SECONDS = 0.2
"""The warmer works at most `WARM_SLICE_SECONDS` at a time, then lets the worker run for
`WARM_PAUSE_SECONDS` (10 % of the event loop while anything is cold); when nothing was
cold it looks again ten times less often."""
PARAMETERS = frozenset(
    {
        "within",
        "include_breached",
        "limit",
        "metric",
        "plan",
        "priority",
        "customer",
        "goal",
        "group",
    }
)
"""The public query parameters; any other is refused (a typo in a bookmarked board URL
must not silently show everything)."""

Refuse = Callable[[web.Request], web.Response | None]
View = Callable[[], tuple[dict[int, "Partition"], set[int]]]


class BadParameter(SlaWorkerError, ValueError):
    """A query parameter of `GET /at-risk` that cannot be used: answered with 400."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter


def parse_within(text: str) -> timedelta:
    """An ISO 8601 duration of wall-clock time: `PT15M`, `PT1H`, `P1D`, `P1DT12H`,
    `PT0S` (only what is already breached). Days are allowed here, unlike in targets:
    "due within a day" is wall-clock time, with no business day to confuse it with."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(.+))?", text)
    if match is None or not any(match.groups()):
        raise ValueError(f"invalid ISO 8601 duration {text!r} (e.g. PT15M, PT1H, P1D)")
    days, rest = match.groups()
    value = timedelta(days=int(days or 0))
    if rest is not None and not re.fullmatch(r"0+(?:\.0+)?[HMS]", rest):
        value += parse_duration(f"PT{rest}")
    if value > MAX_WITHIN:
        raise ValueError(f"{text!r} is longer than the maximum, P366D")
    return value


def parse_query(request: web.Request, policy: Policy) -> AtRiskQuery:
    """The query of a request; `BadParameter` names what is wrong."""
    params = request.query
    for name in params:
        if name not in PARAMETERS and name != "at":
            raise BadParameter(name, f"unknown parameter {name!r} (known: {sorted(PARAMETERS)})")
    within = DEFAULT_WITHIN
    if "within" in params:
        try:
            within = parse_within(params["within"])
        except ValueError as exc:
            raise BadParameter("within", str(exc)) from None
    include_breached = True
    if "include_breached" in params:
        flag = params["include_breached"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise BadParameter("include_breached", "include_breached must be true or false")
        include_breached = flag in ("true", "1")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            raise BadParameter("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    versions = policy.history()
    # A goal policy (#22) accepts any plan and priority on its tickets, so only the
    # metrics and goal names it defines are checked; groups are free-form attributes.
    goal_policy = any(version.goals for version in versions)
    plans = {name for version in versions for name in version.plans}
    priorities = {
        p for version in versions for plan in version.plans.values() for p in plan.targets
    }
    known_metrics = set(METRICS) | {m.name for v in versions for m in v.metrics}
    metric = _values(request, "metric")
    for value in metric:
        if value not in known_metrics:
            raise BadParameter(
                "metric", f"unknown metric {value!r} (known: {sorted(known_metrics)})"
            )
    plan = _values(request, "plan")
    for value in plan:
        if value not in plans and not goal_policy:
            raise BadParameter("plan", f"unknown plan {value!r} (known: {sorted(plans)})")
    priority: set[int] = set()
    for value in _values(request, "priority"):
        if not value.isdigit() or (int(value) not in priorities and not goal_policy):
            raise BadParameter(
                "priority", f"unknown priority {value!r} (known: {sorted(priorities)})"
            )
        priority.add(int(value))
    goal_names = {g.name for v in versions for g in v.goals if g.name is not None}
    goal = _values(request, "goal")
    for value in goal:
        if value not in goal_names:
            known = f"known: {sorted(goal_names)}" if goal_names else "the policy names no goals"
            raise BadParameter("goal", f"unknown goal {value!r} ({known})")
    group = _values(request, "group")
    return AtRiskQuery(
        within=within,
        include_breached=include_breached,
        limit=limit,
        metrics=frozenset(metric),
        plans=frozenset(plan),
        priorities=frozenset(priority),
        customers=frozenset(_values(request, "customer")),
        goals=frozenset(goal),
        groups=frozenset(group),
    )


def _values(request: web.Request, name: str) -> set[str]:
    """A filter's values: repeated (`?plan=a&plan=b`) or comma-separated (`?plan=a,b`)."""
    found = {
        v.strip() for raw in request.query.getall(name, []) for v in raw.split(",") if v.strip()
    }
    if name in request.query and not found:
        raise BadParameter(name, f"{name} needs a value")
    return found


# --- answers as JSON ------------------------------------------------------------------------


def signed_duration(value: timedelta) -> str:
    """Whole seconds (towards zero) in ISO 8601, with a sign for negative durations
    (ISO 8601-2): `-PT5M`. `remaining_seconds` keeps the microseconds."""
    seconds = int(value.total_seconds())
    if seconds < 0:
        return "-" + format_duration(timedelta(seconds=-seconds))
    return format_duration(timedelta(seconds=seconds))


_target_text = functools.lru_cache(maxsize=1024)(format_duration)
"""A policy has few targets: each is written once, not once per row."""


def row_json(row: AtRiskRow) -> dict[str, Any]:
    return {
        "ticket_id": row.ticket_id,
        "customer_id": row.customer_id,
        "plan": row.plan,
        "priority": row.priority,
        "metric": row.metric,
        "cycle": row.cycle,
        "goal": row.goal,
        "group": row.group,
        "deadline": _iso(row.deadline),
        "remaining": signed_duration(row.remaining),
        "remaining_seconds": row.remaining / timedelta(microseconds=1) / 1e6,
        "target": _target_text(row.target),
        "calendar": row.calendar,
        "paused": row.paused,
        "breached": row.breached,
        "partition": row.partition,
    }


def row_from_json(data: dict[str, Any]) -> AtRiskRow:
    return AtRiskRow(
        ticket_id=data["ticket_id"],
        customer_id=data["customer_id"],
        plan=data["plan"],
        priority=int(data["priority"]),
        metric=data["metric"],
        cycle=int(data["cycle"]),
        deadline=datetime.fromisoformat(data["deadline"]),
        remaining=timedelta(microseconds=round(float(data["remaining_seconds"]) * 1e6)),
        target=parse_duration(data["target"]),
        calendar=data["calendar"],
        paused=bool(data["paused"]),
        breached=bool(data["breached"]),
        partition=int(data["partition"]),
        goal=data.get("goal"),
        group=data.get("group"),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def compact_row(row: AtRiskRow) -> list[Any]:
    """A row between workers: times as integer microseconds (since the epoch for the
    deadline), in `AtRiskRow`'s field order."""
    return [
        row.ticket_id,
        row.customer_id,
        row.plan,
        row.priority,
        row.metric,
        row.cycle,
        (row.deadline - _EPOCH) // _US,
        row.remaining // _US,
        row.target // _US,
        row.calendar,
        row.paused,
        row.breached,
        row.partition,
        row.goal,
        row.group,
    ]


def row_from_compact(data: list[Any]) -> AtRiskRow:
    (ticket, customer, plan, priority, metric, cycle, deadline, remaining, target) = data[:9]
    calendar, paused, breached, partition, goal, group = data[9:]
    return AtRiskRow(
        str(ticket),
        customer,
        str(plan),
        int(priority),
        str(metric),
        int(cycle),
        _EPOCH + timedelta(microseconds=int(deadline)),
        timedelta(microseconds=int(remaining)),
        timedelta(microseconds=int(target)),
        str(calendar),
        bool(paused),
        bool(breached),
        int(partition),
        goal,
        group,
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _counts_json(part: AtRiskAnswer) -> dict[str, Any]:
    return {
        "total": part.total,
        "breached": part.breached,
        "priority": {str(k): v for k, v in sorted(part.by_priority.items())},
        "metric": dict(sorted(part.by_metric.items())),
    }


def _counts_from_json(data: dict[str, Any]) -> AtRiskAnswer:
    return AtRiskAnswer(
        total=int(data["total"]),
        breached=int(data["breached"]),
        by_priority=Counter({int(k): int(v) for k, v in data["priority"].items()}),
        by_metric=Counter({str(k): int(v) for k, v in data["metric"].items()}),
    )


class WorkerAnswer:
    """One worker's answer: per partition its counts and first rows."""

    def __init__(self, parts: dict[int, AtRiskAnswer], restoring: Iterable[int]) -> None:
        self.parts = parts
        self.restoring = set(restoring)

    def to_json(self, limit: int, compact: bool = False) -> dict[str, Any]:
        merged = merge(self.parts.values(), limit)
        write = compact_row if compact else row_json
        return {
            "partitions": {str(p): _counts_json(a) for p, a in sorted(self.parts.items())},
            "restoring_partitions": sorted(self.restoring),
            "rows": [write(row) for row in merged.rows],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerAnswer:
        """Rows in either form: compact (arrays) or public (objects)."""
        parts = {int(p): _counts_from_json(c) for p, c in data["partitions"].items()}
        for raw in data["rows"]:
            row = row_from_compact(raw) if isinstance(raw, list) else row_from_json(raw)
            if row.partition in parts:
                parts[row.partition].rows.append(row)
        return cls(parts, (int(p) for p in data.get("restoring_partitions", [])))


def due_soon_counts(view: View, windows: list[timedelta]) -> Counter[Any]:
    """`sla_timers_due_soon` of this worker's partitions, now (see `worker.metrics`)."""
    now = datetime.now(UTC)
    partitions, _ = view()
    total: Counter[Any] = Counter()
    for partition in partitions.values():
        total.update(due_soon(partition, windows, now))
    return total


def local_answer(view: View, query: AtRiskQuery, now: datetime) -> WorkerAnswer:
    partitions, restoring = view()
    parts = {number: answer(p, query, now) for number, p in partitions.items()}
    return WorkerAnswer(parts, restoring)


# --- the route ------------------------------------------------------------------------------


class AtRiskApi:
    """`GET /at-risk`: `handle` answers; `close` (on the application's cleanup) closes the
    HTTP client it keeps for the other workers (kept-alive connections: a board polling
    every second must not open new ones each time)."""

    def __init__(
        self,
        view: View,
        policy: Callable[[], Policy],
        owners: Callable[[], dict[int, str]],
        partitions: int,
        own_url: str,
        token: str | None,
        refused: Refuse,
    ) -> None:
        self.view = view
        self.policy = policy
        self.owners = owners
        self.partitions = partitions
        self.own_url = own_url
        self.token = token
        self.refused = refused
        self._session: aiohttp.ClientSession | None = None
        self._warmer: asyncio.Task[None] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        try:
            query = parse_query(request, self.policy())
        except BadParameter as exc:
            return web.json_response({"error": str(exc), "parameter": exc.parameter}, status=400)
        forwarded = FORWARDED in request.headers
        now = datetime.now(UTC)
        if forwarded and "at" in request.query:
            try:
                now = datetime.fromisoformat(request.query["at"]).astimezone(UTC)
            except ValueError:
                return web.json_response(
                    {"error": "at must be an ISO 8601 instant", "parameter": "at"}, status=400
                )
        if forwarded:
            compact = request.headers.get(COMPACT) == "compact"
            local = local_answer(self.view, query, now)
            return web.json_response(local.to_json(query.limit, compact))
        peers = sorted({url for url in self.owners().values() if url and url != self.own_url})
        params = [(k, v) for k, v in request.query.items() if k != "at"] + [("at", _iso(now))]
        # The others are asked first, so that they work while this worker answers for its
        # own partitions: the answer takes the longest of the workers, not their sum.
        asked = [asyncio.ensure_future(self._ask(peer, params)) for peer in peers]
        await asyncio.sleep(0)  # let the requests go out before the local query blocks
        answers: list[tuple[str, WorkerAnswer | str]] = [
            (self.own_url, local_answer(self.view, query, now))
        ]
        answers += await asyncio.gather(*asked)
        return web.json_response(_combine(answers, query, now, self.partitions))

    async def start_warming(self, app: web.Application | None = None) -> None:
        """Keep the partitions' summaries warm in the background (`at_risk.warm`)."""
        self._warmer = asyncio.create_task(self._warm())

    async def _warm(self) -> None:
        pause = WARM_PAUSE_SECONDS
        while True:
            await asyncio.sleep(pause)
            partitions, _ = self.view()
            now = datetime.now(UTC)
            enough = _budget(WARM_SLICE_SECONDS)
            done = 0
            for partition in partitions.values():
                done += warm(partition, now, WARM_WITHIN, enough)
                if enough():
                    break
            pause = WARM_PAUSE_SECONDS if done else 10 * WARM_PAUSE_SECONDS

    async def close(self, app: web.Application | None = None) -> None:
        if self._warmer is not None:
            self._warmer.cancel()
            self._warmer = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _ask(self, url: str, params: list[tuple[str, str]]) -> tuple[str, WorkerAnswer | str]:
        """One peer's answer, or why there is none."""
        headers = {FORWARDED: "1", COMPACT: "compact"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        target = f"{url.rstrip('/')}/at-risk"
        try:
            async with self._session.get(target, params=params, headers=headers) as response:
                if response.status == 401:
                    return url, "refused this worker's API token (every worker needs the same one)"
                if response.status != 200:
                    return url, f"answered HTTP {response.status}"
                return url, WorkerAnswer.from_json(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            return url, f"did not answer: {type(exc).__name__}"


def _budget(seconds: float) -> Callable[[], bool]:
    """A function that says whether `seconds` have passed since this call."""
    until = time.perf_counter() + seconds
    return lambda: time.perf_counter() > until


def _combine(
    answers: list[tuple[str, WorkerAnswer | str]],
    query: AtRiskQuery,
    now: datetime,
    partitions: int,
) -> dict[str, Any]:
    taken: dict[int, AtRiskAnswer] = {}
    restoring: set[int] = set()
    errors = []
    for url, got in answers:
        if isinstance(got, str):
            errors.append({"worker": url, "error": got})
            continue
        restoring |= got.restoring
        for number, part in got.parts.items():
            taken.setdefault(number, part)  # a partition claimed twice: the first claim
    missing = sorted(set(range(partitions)) - set(taken))
    merged = merge(taken.values(), query.limit)
    return {
        "as_of": _iso(now),
        "within": format_duration(query.within),
        "include_breached": query.include_breached,
        "limit": query.limit,
        "partial": bool(missing),
        "missing_partitions": missing,
        "restoring_partitions": sorted(restoring),
        "errors": errors,
        "counts": _counts_json(merged),
        "rows": [row_json(row) for row in merged.rows],
    }
