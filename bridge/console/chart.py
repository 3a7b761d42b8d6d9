"""The overview's chart: sales, refunds and booked amount per day per endpoint, as server-rendered SVG.

Counts are events by the day they were recorded (UTC). The booked amount is the sum of sales delivered to
Partnero that day, per currency; the chart draws the endpoint's largest currency as a line, the table
beside it lists every currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from markupsafe import Markup, escape

from bridge.store.base import DayRow

DAY = 86400
WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 640, 200, 34, 64, 12, 28


@dataclass
class EndpointDays:
    endpoint: str
    days: list[str]
    sales: list[int]
    refunds: list[int]
    booked: dict[str, list[Decimal]] = field(default_factory=dict)

    @property
    def main_currency(self) -> str | None:
        totals = {c: sum(v, Decimal(0)) for c, v in self.booked.items()}
        return max(totals, key=lambda c: (totals[c], c)) if totals else None

    def as_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "days": self.days,
            "sales": self.sales,
            "refunds": self.refunds,
            "booked": {c: [str(v) for v in values] for c, values in self.booked.items()},
        }


def day_label(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def per_endpoint(rows: list[DayRow], now: float, days: int) -> list[EndpointDays]:
    first = int(now // DAY) - days + 1
    labels = [day_label((first + i) * DAY) for i in range(days)]
    series: dict[str, EndpointDays] = {}
    for row in rows:
        index = int(row.day_start // DAY) - first
        if not 0 <= index < days:
            continue
        s = series.setdefault(row.endpoint, EndpointDays(row.endpoint, labels, [0] * days, [0] * days))
        if row.kind == "sale":
            s.sales[index] += row.events
            amount = _decimal(row.amount)
            if row.status == "delivered" and amount is not None and row.currency:
                s.booked.setdefault(row.currency, [Decimal(0)] * days)[index] += amount * row.events
        elif row.kind in ("refund", "dispute"):
            s.refunds[index] += row.events
    return [series[name] for name in sorted(series)]


def _decimal(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text is not None else None
    except InvalidOperation:
        return None


def svg(series: EndpointDays) -> Markup:
    """Grouped bars (sales, refunds; left axis) and the booked amount line (right axis)."""
    n = len(series.days)
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    top_count = max([1, *series.sales, *series.refunds])
    slot = inner_w / n
    bar = max(2.0, slot * 0.36)
    parts: list[str] = []

    def y(count: float, top: float) -> float:
        return PAD_TOP + inner_h - (count / top) * inner_h

    base = PAD_TOP + inner_h
    parts.append(f'<line class="axis" x1="{PAD_LEFT}" y1="{base}" x2="{PAD_LEFT + inner_w}" y2="{base}"/>')
    parts.append(f'<text class="tick" x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end">{top_count}</text>')
    parts.append(f'<text class="tick" x="{PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>')
    for i, day in enumerate(series.days):
        x = PAD_LEFT + i * slot + slot * 0.1
        for cls, count, dx in (("sales", series.sales[i], 0.0), ("refunds", series.refunds[i], bar)):
            top = y(count, top_count)
            parts.append(
                f'<rect class="{cls}" x="{x + dx:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{base - top:.1f}">'
                f"<title>{escape(day)}: {count} {cls}</title></rect>"
            )
        if i % max(1, n // 7) == 0 or i == n - 1:
            parts.append(
                f'<text class="tick" x="{x + bar:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(day[5:])}</text>'
            )
    currency = series.main_currency
    if currency is not None:
        values = series.booked[currency]
        top_amount = max([Decimal(1), *values])
        points = " ".join(
            f"{PAD_LEFT + i * slot + slot / 2:.1f},{y(float(v), float(top_amount)):.1f}" for i, v in enumerate(values)
        )
        parts.append(f'<polyline class="booked" points="{points}"><title>booked {escape(currency)}</title></polyline>')
        parts.append(
            f'<text class="tick" x="{PAD_LEFT + inner_w + 4}" y="{PAD_TOP + 4}">{escape(str(top_amount))}'
            f" {escape(currency)}</text>"
        )
    label = f"Sales, refunds and booked amount per day for endpoint {series.endpoint}"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}"'
        f' preserveAspectRatio="xMidYMid meet">{"".join(parts)}</svg>'
    )


def booked_totals(series: EndpointDays) -> dict[str, str]:
    return {c: str(sum(values, Decimal(0))) for c, values in sorted(series.booked.items())}
