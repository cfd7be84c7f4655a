"""branch: the first condition that holds (variables, caller number, time of day, weekday, holidays)."""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _in_hours(spec: str, now: time) -> bool:
    start_s, _, end_s = spec.partition("-")
    start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
    return start <= now < end if start <= end else now >= start or now < end  # may wrap past midnight


def holds(cond, variables: dict, now: datetime) -> bool:
    if cond.variable is not None:
        value = variables.get(cond.variable)
        if cond.equals is not None and str(value) != str(cond.equals):
            return False
        if cond.matches is not None and not re.search(cond.matches, str(value if value is not None else "")):
            return False
    if cond.caller is not None and not re.search(cond.caller, str(variables.get("caller", ""))):
        return False
    if cond.hours is not None and not _in_hours(cond.hours, now.time()):
        return False
    if cond.weekdays is not None and WEEKDAYS[now.weekday()] not in cond.weekdays:
        return False
    if cond.dates is not None and now.date() not in cond.dates:
        return False
    return True


async def run(node_id, node, run) -> str | None:
    now = run.variables.get("now")
    now = now if isinstance(now, datetime) else datetime.now(ZoneInfo(node.timezone))
    for cond in node.conditions:
        if holds(cond, run.variables, now):
            return cond.goto
    return node.default
