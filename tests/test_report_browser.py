"""The HTML report as a person sees it: opened in headless Chromium (Debian's package), its
DOM and a screenshot checked for the chart, its legend and the content-gap list.

Chromium is a real local program, like the databases: missing, the test is skipped locally
and fails in CI (CI=true), where .ci/run installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.reports.chart import SERIES
from bot.reports.html_page import GAP_MARK
from tests.conftest import IN_CI, Workspace, doc_text
from tests.test_report import seed_gaps

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WIDTH, HEIGHT = 900, 2600


@pytest.fixture
def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        message = f"Chromium is not installed at {path} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " — CI requires it", pytrace=False)
        pytest.skip(message)
    return path


def browse(
    chromium: str, page: Path, profile: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """One run of a fresh headless Chromium on a file, with nothing reaching the network."""
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def pixels_of(image: np.ndarray, color: str, tolerance: int = 3) -> np.ndarray:
    """(y, x) of the pixels of ``color`` (#rrggbb)."""
    want = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    close = np.all(np.abs(image[:, :, :3].astype(int) - want) <= tolerance, axis=2)
    return np.argwhere(close)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not the database
def test_the_html_report_in_a_browser_shows_chart_legend_and_content_gaps(
    cli, db_url: str, workspace: Workspace, tmp_path: Path, chromium: str
) -> None:
    seed_gaps(db_url)
    workspace.write(
        "handbook",
        "vpn.md",
        doc_text("Remote access", None, "Connect to the VPN with the WireGuard app and your SSO."),
    )
    r = cli("report", "--days", "7", "--format", "html", "--out", str(tmp_path / "rep"))
    assert r.code == 0, r.err
    page = tmp_path / "rep" / "report.html"

    # The DOM the browser built: the chart with its legend and seven days, the gap list.
    dom = browse(chromium, page, tmp_path / "profile-dom", "--dump-dom").stdout
    assert dom.count("<svg") == 1 and dom.count('data-day="') == 7
    for s in SERIES:
        assert f'data-legend="{s.key}"' in dom and f'data-series="{s.key}"' in dom
    gaps = dom[dom.index('id="content-gaps"') : dom.index('id="worst"')]
    assert 'data-topic="vpn password reset" data-count="3"' in gaps
    assert 'data-topic="office parking" data-count="2"' in gaps
    assert "How do I reset my VPN password?" in gaps and "Remote access" in gaps
    assert "&lt;b&gt;fails&lt;/b&gt;" in gaps and "<b>" not in gaps  # text, never markup
    assert "Salary" not in dom

    # The screenshot: a real rendering, with the legend's four colours in one row above
    # the bars of the same colours, and the gap list's topics below the chart.
    shot = tmp_path / "shot.png"
    browse(
        chromium,
        page,
        tmp_path / "profile-shot",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
    )
    if os.environ.get("REPORT_SHOT"):  # to look at it: REPORT_SHOT=path pytest …
        shutil.copy(shot, os.environ["REPORT_SHOT"])
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (HEIGHT, WIDTH)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200  # text and a chart, not blank
    tops, bottoms = [], []
    for s in SERIES:
        found = pixels_of(image, s.color)
        assert len(found) > 150, f"{s.label}: not drawn"
        tops.append(found[:, 0].min())
        bottoms.append(found[:, 0].max())
    legend_row = min(tops)
    assert max(tops) - legend_row <= 2, f"legend swatches not in one row: {tops}"
    for s in SERIES:  # each colour also below the legend: its bars
        below = pixels_of(image, s.color)
        assert (below[:, 0] > legend_row + 30).sum() > 50, f"{s.label}: no bars"
    chart_bottom = max(bottoms)
    marks = pixels_of(image, GAP_MARK, tolerance=2)
    marks = marks[marks[:, 0] > chart_bottom]
    columns = np.unique(marks[:, 1], return_counts=True)
    assert columns[1].max() > 150, "no content-gap topics (their left rule) below the chart"
