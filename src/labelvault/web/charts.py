"""Server-rendered SVG charts: geometry computed here, drawn by the dashboard template.

Only aggregate numbers ever reach a chart (never content)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TASK_STATES = ("open", "assigned", "leased", "submitted", "skipped", "accepted")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    value: float
    text: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    baseline: float
    empty: bool


def bar_chart(
    title: str,
    series: Sequence[tuple[str, float]],
    *,
    width: int = 520,
    height: int = 180,
    percent: bool = False,
    top: float | None = None,
) -> BarChart:
    label_room, pad = 28.0, 6.0
    plot_h = height - label_room - 14
    peak = top if top is not None else max((v for _, v in series), default=0.0)
    n = max(len(series), 1)
    slot = (width - pad) / n
    bars = []
    for i, (label, value) in enumerate(series):
        h = 0.0 if peak <= 0 else max(0.0, value) / peak * plot_h
        text = f"{value:.0%}" if percent else f"{value:g}"
        bars.append(
            Bar(
                round(pad + i * slot, 1),
                round(14 + plot_h - h, 1),
                round(max(slot - pad, 1.0), 1),
                round(h, 1),
                label,
                value,
                text,
            )
        )
    return BarChart(
        title,
        tuple(bars),
        width,
        height,
        round(14 + plot_h, 1),
        empty=not any(v for _, v in series),
    )


def progress_chart(aggregates: dict[str, Any]) -> BarChart:
    by_state: dict[str, int] = aggregates.get("tasks_by_state", {})
    states = [s for s in TASK_STATES if s in by_state] + sorted(
        s for s in by_state if s not in TASK_STATES
    )
    return bar_chart("Tasks by state", [(s, float(by_state[s])) for s in states])


def throughput_chart(aggregates: dict[str, Any], *, days: int, today: dt.date) -> BarChart:
    per_day: dict[str, float] = {}
    for row in aggregates.get("throughput", []):
        per_day[row["day"]] = per_day.get(row["day"], 0.0) + float(row["annotations"])
    series = []
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        series.append((day.strftime("%d/%m"), per_day.get(day.isoformat(), 0.0)))
    return bar_chart(f"Annotations per day (last {days} days)", series)


def quality_chart(aggregates: dict[str, Any]) -> BarChart:
    reviews = aggregates.get("reviews", {})
    agreement = aggregates.get("agreement") or {}
    gold = aggregates.get("gold_accuracy") or {}
    decided = float(reviews.get("decided", 0) or 0)
    pending = float(reviews.get("pending", 0) or 0)
    series = [
        ("agreement", max(0.0, float(agreement.get("value") or 0.0))),
        ("acceptance", float(reviews.get("acceptance_rate") or 0.0)),
        ("reviewed", decided / (decided + pending) if decided + pending else 0.0),
        ("gold", float(gold.get("value") or 0.0)),
    ]
    return bar_chart("Agreement and review rates", series, percent=True, top=1.0)
