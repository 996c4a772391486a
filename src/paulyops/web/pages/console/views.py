"""View-model helpers of the console pages: SVG charts, human-readable values."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

STATUS_FILL = {
    "healthy": "#1e7d45",
    "degraded": "#a15c00",
    "unhealthy": "#c62828",
    "not_configured": "#9aa3b5",
}
STATUS_BADGE = {"healthy": "ok", "degraded": "warn", "unhealthy": "bad", "not_configured": ""}

# --- charts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a server-rendered SVG chart (presentation attributes only)."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    label: str
    day: str = ""
    count: int = 0


def activity_chart(
    days: list[date], counts: Counter[date], *, width: int = 600, height: int = 120
) -> dict[str, Any]:
    """Return the bars of the audit-activity chart: one per day, scaled to the busiest.

    The SVG stretches to the card's width at a fixed CSS height (``preserveAspectRatio``
    ``none``), so ``width`` and ``height`` are only the coordinate system; the date labels
    are HTML under the chart, so they keep the page's text size at every width.
    """
    top = max((counts[day] for day in days), default=0)
    slot = width / max(1, len(days))
    bars = []
    for index, day in enumerate(days):
        count = counts[day]
        bar_height = 0.0 if top == 0 else max(2.0, (height - 4) * count / top)
        if count == 0:
            bar_height = 1.0
        bars.append(
            Bar(
                x=round(index * slot + 1, 2),
                y=round(height - bar_height, 2),
                width=round(max(1.0, slot - 2), 2),
                height=round(bar_height, 2),
                fill="#2f5bea" if count else "#d9dfea",
                label=f"{day.isoformat()}: {count} event{'s' if count != 1 else ''}",
                day=day.isoformat(),
                count=count,
            )
        )
    busiest = max(days, key=lambda day: counts[day]) if top else None
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "total": sum(counts[day] for day in days),
        "top": top,
        "busiest": busiest,
        "first": days[0] if days else None,
        "last": days[-1] if days else None,
    }


def health_bars(
    report: dict[str, Any], *, width: int = 160, height: int = 14
) -> list[dict[str, Any]]:
    """Return one small bar per dependency: length by response time (log scale), color by status."""
    out = []
    for name, check in report.get("checks", {}).items():
        status = str(check.get("status", "unhealthy"))
        ms = int(check.get("responseTime", 0))
        # 1 ms fills a sliver, 1 s and more the whole track.
        share = min(1.0, math.log10(max(1, ms) + 1) / 3)
        out.append(
            {
                "name": name,
                "status": status,
                "ms": ms,
                "badge": STATUS_BADGE.get(status, ""),
                "width": width,
                "height": height,
                "bar": round(max(4.0, width * share), 1),
                "fill": STATUS_FILL.get(status, "#5b6478"),
                "details": human_details(check.get("details")),
            }
        )
    return out


# --- human-readable values ------------------------------------------------------------------

# Labels of health-check details whose generic wording ("rss", "pid") would be unclear.
DETAIL_LABELS = {
    "rssBytes": "memory used",
    "freeBytes": "free space",
    "uptimeSeconds": "uptime",
    "systemMemoryPercent": "system memory in use",
    "pid": "process id",
    "activeKeyId": "active key",
    "keyIds": "keys",
    "opensslFipsMode": "OpenSSL FIPS mode",
}


def human_bytes(value: float) -> str:
    """``84041719808`` -> ``78.3 GB`` (binary multiples, as disks and memory are reported)."""
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover  # the loop returns at TB


def human_duration(seconds: float) -> str:
    """A coarse duration read at a glance: ``5 s``, ``3 min``, ``2 h 5 min``, ``1 d 1 h``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 3600:
        return f"{minutes} min"
    if total < 86400:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"


def _detail_label(key: str) -> str:
    if key in DETAIL_LABELS:
        return DETAIL_LABELS[key]
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ")
    return words.lower()


def human_value(key: str, value: Any) -> str:
    """One health detail as a person reads it: sizes, durations, yes/no, lists, ``—``."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key.endswith("Bytes"):
            return human_bytes(value)
        if key.endswith("Seconds"):
            return human_duration(value)
        if key.endswith("Percent"):
            return f"{value:g} %"
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | tuple | set):
        return ", ".join(human_value("", item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{_detail_label(k)} {human_value(k, v)}" for k, v in value.items())
    return str(value).replace("_", " ") if key in ("migrations", "connectionPool") else str(value)


def human_details(details: Any) -> list[tuple[str, str]]:
    """A check's ``details`` as ``(label, value)`` pairs for the health table."""
    if not isinstance(details, dict):
        return []
    return [
        (_detail_label(str(key)), human_value(str(key), value)) for key, value in details.items()
    ]


def parse_timestamp(value: Any) -> datetime | None:
    """The healthz ``timestamp`` (ISO 8601, ``Z``) as an aware datetime, or ``None``."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
