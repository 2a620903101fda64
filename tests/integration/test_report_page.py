"""The HTML report as a reader sees it: rendered by headless Chromium, offline.

It fails (never skips) without a browser: `scripts/ensure-chromium` installs Debian's
`chromium` when run as root, and says what to do otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image

from worker.traffic import synthetic_stream

ROOT = Path(__file__).parent.parent.parent
CHARTS = {"chart-periods", "chart-plan-priority", "chart-first-response", "chart-customers"}


def browser() -> str:
    found = subprocess.run(
        [ROOT / "scripts" / "ensure-chromium"], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, f"no browser for the report test:\n{found.stderr}"
    return found.stdout.strip().split(": ", 1)[1]


def sla_worker(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "worker", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [
            browser(),
            *("--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"),
            # Offline: the page must need nothing from the network.
            "--proxy-server=127.0.0.1:9",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


class Page(HTMLParser):
    """The numbers (by data-field), and the charts with their drawn shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[list[str]] = []  # [data-field, text], in page order
        self.charts: Counter[str] = Counter()  # chart id -> SVG paths inside it
        self._field: str | None = None
        self._chart: str | None = None
        self._depth = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        for name in ("src", "href"):
            value = attr.get(name) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)
        if attr.get("data-field"):
            self._field = attr["data-field"]
            self.fields.append([self._field, ""])
        if tag == "div" and attr.get("id") in CHARTS:
            self._chart, self._depth = attr["id"], 0
        if self._chart is not None:
            if tag == "div":
                self._depth += 1
            if tag == "path":
                self.charts[self._chart] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "div") and self._field is not None:
            self._field = None
        if self._chart is not None and tag == "div":
            self._depth -= 1
            if self._depth == 0:
                self._chart = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self.fields[-1][1] += data


def lookup(report: dict[str, Any], field: str) -> Any:
    value: Any = report
    for part in field.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def read_back(field: str, text: str) -> float | None:
    """A number as the page shows it, independent of how the page formats it."""
    text = text.strip()
    if text == "n/a":
        return None
    if text.endswith("%"):
        return float(text.rstrip(" %"))
    if ":" in text:
        hours, minutes, secs = (int(x) for x in text.split(":"))
        return float(hours * 3600 + minutes * 60 + secs)
    return float(text)


def test_the_html_report_renders_with_its_charts_and_the_json_reports_numbers(
    tmp_path: Path,
) -> None:
    lines, _ = synthetic_stream(40_000, 4_000, seed=23, customers=11)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    records = tmp_path / "records.jsonl"
    replayed = sla_worker(
        "replay", str(events), "--finished-timers", "--output", str(records),
        "--now", "2027-01-01T00:00:00Z",
    )  # fmt: skip
    page, report_json = tmp_path / "report.html", tmp_path / "report.json"
    sla_worker("report", str(records), "--period", "week", "--html", str(page),
               "--json", str(report_json))  # fmt: skip
    report = json.loads(report_json.read_text())
    assert f"timers met: {report['totals']['met']};" in replayed.stderr

    # The DOM as Chromium built it: every chart drawn, every number the JSON's.
    dom = Page()
    dom.feed(chromium(tmp_path, page, "--dump-dom").stdout)
    assert set(dom.charts) == CHARTS and min(dom.charts.values()) > 20, dom.charts
    assert dom.external == []
    rows = sum(len(report[name]) for name in
               ("by_period", "by_plan", "by_priority", "by_metric", "by_customer",
                "by_plan_priority"))  # fmt: skip
    assert len(dom.fields) == 6 + 9 * (1 + rows)  # the key figures, then the tables
    for field, text in dom.fields:
        want = lookup(report, field)
        got = read_back(field, text)
        if want is None or got is None:
            assert want is got, (field, text, want)
        elif field.endswith("_s"):
            assert abs(got - want) <= 0.5, (field, text, want)
        else:
            assert abs(got - want) <= 0.05, (field, text, want)
    assert dom.fields[1] == ["totals.met", str(report["totals"]["met"])]

    # What a reader sees: a full page, not blank, with the charts' colours on it.
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = Counter({colour: n for n, colour in image.getcolors(1280 * 2000) or []})
    background, share = colours.most_common(1)[0][0], colours.most_common(1)[0][1]
    assert share / (1280 * 2000) < 0.9, f"mostly {background}: blank?"
    assert len(colours) > 200
    met, breached = (46, 125, 50), (198, 40, 40)  # MET_COLOR and BREACHED_COLOR
    assert colours[met] > 5_000 and colours[breached] > 5_000
