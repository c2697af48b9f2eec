"""The dashboard in a real browser: Debian's chromium (``make browser-deps``) driven by Selenium.

One end-to-end path, as the desk uses it: the real pipeline fills a fresh database with a small
generated day, ``intraday dashboard`` runs as a subprocess (the production entry point), headless
chromium opens ``/``, is sent to ``/login``, logs in through the form, waits until the graphs hold
data, checks the page's main elements against the database, checks the browser console, checks
that every callback POST carried the CSRF header (and that one without it is refused), and saves
a screenshot to the test's tmp directory (and to ``docs/screenshots/desk.png`` with
``INTRADAY_UPDATE_SCREENSHOT=1``).

A second path, as a newcomer meets it: ``intraday demo`` at its default speed, the login it
prints, the next-QH table with data checked against the database, an alert acknowledged through
the page, and a screenshot of each tab (``docs/screenshots/{portfolio,asset,report}.png``).

Skipped, with the reason, only when ``/usr/bin/chromium`` or ``/usr/bin/chromedriver`` is missing.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from pipeline import run_pipeline

from intraday.backoffice.users import add_user
from intraday.dashboard import clock as CL
from intraday.dashboard import frames as FR
from intraday.dashboard.auth import CSRF_COOKIE, CSRF_HEADER
from intraday.ingest.generate.day import generate_day
from intraday.readmodels import queries as Q

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "docs" / "screenshots" / "desk.png"
DAY = dt.date(2025, 6, 8)
WINDOW = (1600, 1000)
PASSWORD = "browser-test-pw-7d1c"
START_TIMEOUT_S = 60
PAGE_TIMEOUT_S = 60
ALERTS_PAGE_SIZE = 12  # intraday/dashboard/layout.py: the alerts table's page_size

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                              "run `make browser-deps` (as root)"),
]


# ---------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(proc: subprocess.Popen, port: int, log_path: Path, timeout: float) -> None:
    """Until the dashboard accepts connections; fails at once if it exits, or at the deadline.
    The pause between probes is ``proc.wait``: it returns early when the process dies."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        try:
            code = proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            raise AssertionError(f"the dashboard exited with {code}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard did not listen on {port} within {timeout}s:\n"
                                 f"{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# Plotly keeps the figure on the graph div (``gd.data``, ``gd.layout``); a trace "holds data" when
# it has at least one non-null y, and the plot is drawn when plotly rendered a trace group for it.
# The figures' ``uirevision`` is their delivery day (intraday/dashboard/figures.py).
GRAPH_STATE_JS = """
const out = {};
for (const id of arguments[0]) {
  const gd = document.querySelector('#' + id + ' .js-plotly-plot');
  if (!gd || !Array.isArray(gd.data)) { out[id] = {points: 0, drawn: 0, traces: 0, day: '', axis: ''}; continue; }
  let points = 0;
  for (const t of gd.data) {
    for (const v of (t.y || [])) { if (v !== null && v !== undefined) points++; }
  }
  const drawn = gd.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length;
  const layout = gd.layout || {};
  const xaxis = layout.xaxis || {};
  const axis = (xaxis.title && xaxis.title.text) || '';
  out[id] = {points: points, drawn: drawn, traces: gd.data.length, day: String(layout.uirevision || ''),
             axis: axis};
}
return out;
"""


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def filled_db(fresh_db, settings_for, tmp_path) -> str:
    """A fresh database filled by the real pipeline (broker, processors, sink) from a small day."""
    day_dir = tmp_path / DAY.isoformat()
    generate_day(day_dir, DAY, assets=3, public_trades=2000, seed=1)
    run_pipeline(day_dir, settings_for(fresh_db), tmp_path / "export")
    return fresh_db


@pytest.fixture
def dashboard_url(filled_db, tmp_path):
    """``intraday dashboard`` as a subprocess on a free port, served by the production web server
    (gunicorn, as in docker-compose.yml), with a users file holding one desk user; stopped with
    SIGTERM (and waited for) afterwards: it must exit 0, its workers with it."""
    state = tmp_path / "dashboard-state"
    users = tmp_path / "users.json"
    add_user(users, "desk", PASSWORD, "desk")
    port = free_port()
    env = dict(os.environ, DATABASE_URL=filled_db, INTRADAY_STATE_DIR=str(state), INTRADAY_USERS_FILE=str(users))
    for k in ("INTRADAY_AUTH", "INTRADAY_SECRET_KEY", "FLASK_DEBUG", "DASH_DEBUG"):
        env.pop(k, None)
    log_path = tmp_path / "dashboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "intraday.app.cli", "dashboard", "--host", "127.0.0.1",
                                 "--port", str(port), "--server", "gunicorn"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port, log_path, START_TIMEOUT_S)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
    assert proc.returncode == 0, log_path.read_text()[-2000:]
    assert "gunicorn" in log_path.read_text() and "Booting worker" in log_path.read_text()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    # console messages, and the network events (request headers) of the DevTools protocol
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(PAGE_TIMEOUT_S)
        # the window's size includes (headless) browser chrome: make the viewport WINDOW
        inner_w, inner_h = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        if (inner_w, inner_h) != WINDOW:
            outer = driver.get_window_size()
            driver.set_window_size(outer["width"] + WINDOW[0] - inner_w, outer["height"] + WINDOW[1] - inner_h)
        assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == list(WINDOW)
        yield driver
    finally:
        driver.quit()


# ---------------------------------------------------------------------------------------------
# the test


def test_desk_logs_in_and_sees_the_day_with_data(dashboard_url, filled_db, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.2)

    # what the database says the page must show
    with psycopg.connect(filled_db, autocommit=True) as conn:
        clock = Q.replay_clock(conn)
        liveness = Q.replay_liveness(conn)
        expected_tiles = FR.kpi_tiles(Q.query_running_totals(conn, DAY))
        n_alerts = len(Q.query_alerts(conn, DAY))
        next_qhs = FR.next_qh_records(Q.query_portfolio(conn, DAY), Q.query_trading(conn, DAY), Q.replay_clock(conn))
        days = Q.query_days(conn)["day"].tolist()
        from intraday.dashboard.layout import load_day_options

        default_day = dt.date.fromisoformat(load_day_options(conn, None)[1])  # what the page opens on
    assert clock is not None and DAY in days, "the pipeline left no data for the day"

    # 1. no session: / sends the browser to the login form
    browser.get(dashboard_url + "/")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form input[name=username]")))
    assert "/login" in browser.current_url, browser.current_url
    assert browser.title == "Intraday desk: log in"

    # 2. log in through the form
    browser.find_element(By.ID, "u").send_keys("desk")
    browser.find_element(By.ID, "p").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: "/login" not in d.current_url)
    assert browser.current_url.rstrip("/") == dashboard_url, browser.current_url
    csrf = browser.get_cookie(CSRF_COOKIE)
    assert csrf and csrf["value"], "no CSRF cookie after login"

    # 3. the page opens on the default day (the clock's while measured); the cockpit fills there
    #    (the layout has empty figures: data arrive only through the callbacks, i.e. with the header)
    def graphs_ready(day: dt.date, ids: list[str]):
        def ready(d):
            state = d.execute_script(GRAPH_STATE_JS, ids)
            ok = all(s["points"] > 0 and s["drawn"] > 0 and s["day"] == day.isoformat() for s in state.values())
            return state if ok else False
        return ready

    def wait_graphs(day: dt.date, ids: list[str]) -> dict:
        try:
            return wait.until(graphs_ready(day, ids))
        except Exception:
            browser.save_screenshot(str(tmp_path / "timeout.png"))
            raise AssertionError(f"graphs without data for {day}: {browser.execute_script(GRAPH_STATE_JS, ids)}; "
                                 f"screenshot {tmp_path / 'timeout.png'}") from None

    wait_graphs(default_day, ["cockpit"])
    assert default_day.isoformat() in browser.find_element(By.ID, "day").text

    # the generated day is picked in the day dropdown (a user input driving the callbacks)
    if default_day != DAY:
        browser.find_element(By.ID, "day").click()
        option = wait.until(EC.element_to_be_clickable(
            (By.XPATH, f"//*[@role='option'][contains(., '{DAY.isoformat()}')]")))
        option.click()
        wait.until(lambda d: DAY.isoformat() in d.find_element(By.ID, "day").text)
    graphs = ["cockpit", "prices", "imbalance", "ribbon"]
    graph_state = wait_graphs(DAY, graphs)
    wait.until(lambda d: d.find_element(By.ID, "clock").text.startswith("replay clock"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#kpis .kpi")) == len(expected_tiles))
    # plotly drew the cockpit's lines (an SVG path with points, not an empty one)
    cockpit_lines = browser.execute_script(
        "return [...document.querySelectorAll('#cockpit .scatterlayer .trace path.js-line')]"
        ".filter(p => (p.getAttribute('d') || '').length > 20).length")
    assert cockpit_lines >= 1, graph_state

    # 4. the main elements
    header = browser.find_element(By.CSS_SELECTOR, "header.header")
    assert "Intraday desk" in header.text and "desk (desk)" in header.text
    assert browser.find_element(By.ID, "clock").text == CL.clock_text(clock, liveness)
    assert liveness == "finished" and "not live" in browser.find_element(By.ID, "clock").text
    assert browser.find_element(By.ID, "countdown").is_displayed()
    # KPI tiles: the running totals of the day, as the database has them
    for tile in expected_tiles:
        el = browser.find_element(By.ID, f"kpi-{tile['key']}")
        assert el.find_element(By.CSS_SELECTOR, ".kpi-label").text == tile["label"]
        assert el.find_element(By.CSS_SELECTOR, ".kpi-value").text == tile["value"], tile
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-revenue .kpi-value").text != "–"
    # the day picker shows the generated day, its label not cut off
    assert browser.find_element(By.ID, "day").text == DAY.strftime("%Y-%m-%d (%a)")
    assert browser.execute_script("const e = document.querySelector('#day .dash-dropdown-value');"
                                  "return e.scrollWidth <= e.clientWidth"), "the day label is cut off"
    # as-known-at: history exists, so the slider is enabled with hour marks; live is on
    slider = browser.find_element(By.ID, "as-of")
    assert slider.is_displayed()
    wait.until(lambda d: d.find_element(By.ID, "as-of-label").text == "live")
    assert browser.find_element(By.CSS_SELECTOR, "#as-of [role=slider]").is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, "#as-of [data-disabled], #as-of [aria-disabled=true]")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#as-of .dash-slider-mark")) >= 2
    assert not browser.find_elements(By.CSS_SELECTOR, "#as-of input"), "a raw epoch-seconds box beside the slider"
    assert browser.find_element(By.CSS_SELECTOR, "#live input[type=checkbox]").is_selected()
    # alerts table: newest first, one page of the day's alerts
    header_cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#alerts th.dash-header")]
    assert {"detected (Berlin)", "QH (Berlin)", "severity", "kind", "EUR at risk", "suggested action"} <= set(header_cells), header_cells
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#alerts tr td.dash-cell[data-dash-column=kind]"))
               == min(n_alerts, ALERTS_PAGE_SIZE))
    # the next quarter-hours table: its headers, and as many rows as the database gives for the clock
    nq_headers = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#next-qh th.dash-header")]
    assert {"min to gate closure", "open MW", "EUR at risk", "ID1", "ID3", "IDFull"} <= set(nq_headers), nq_headers
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#next-qh tr td.dash-cell[data-dash-column=qh]"))
               == len(next_qhs))
    if next_qhs:
        first = browser.find_element(By.CSS_SELECTOR, "#next-qh tr td.dash-cell[data-dash-column=qh]").text
        assert first == next_qhs[0]["qh"]
    # feed freshness: one row per source
    assert browser.find_elements(By.CSS_SELECTOR, "#freshness tr td.dash-cell[data-dash-column=source]")
    assert browser.find_element(By.ID, "ack-btn").is_displayed()

    # 5. the browser console: no errors (a favicon 404 is no error of ours)
    severe = [e for e in browser.get_log("browser")
              if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")]
    assert not severe, severe

    # 6. every callback POST carried the CSRF header from the cookie, and was answered 200/204
    posts: dict[str, dict] = {}
    statuses: dict[str, int] = {}
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg.get("method") == "Network.requestWillBeSent":
            req = params.get("request", {})
            if req.get("method") == "POST" and "/_dash-update-component" in req.get("url", ""):
                posts[params["requestId"]] = {k.lower(): v for k, v in req.get("headers", {}).items()}
        elif msg.get("method") == "Network.responseReceived":
            statuses[params["requestId"]] = params.get("response", {}).get("status")
    assert posts, "no callback POST seen"
    assert all(h.get(CSRF_HEADER.lower()) == csrf["value"] for h in posts.values()), list(posts.values())[:3]
    answered = {rid: statuses.get(rid) for rid in posts if rid in statuses}
    assert answered and all(s in (200, 204) for s in answered.values()), answered

    # 7. the screenshot, while the page is as checked
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(tmp_path / "desk.png"))
    if os.environ.get("INTRADAY_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture on demand
        shutil.copyfile(tmp_path / "desk.png", SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 20_000

    # 8. the same POST without the header is refused: the data above came through the header
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/_dash-update-component', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json'}, body: '{}'})
          .then(r => done(r.status), e => done(String(e)));
    """)
    assert status == 403, status

    # the whole page too, for a look at the panels below the fold (tmp only, not committed)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WINDOW[0], "height": height, "scale": 1}})
    (tmp_path / "desk-full.png").write_bytes(base64.b64decode(shot["data"]))



# ---------------------------------------------------------------------------------------------
# the demo as a newcomer meets it: default speed, the printed login, the desk filling at once

SCREENSHOTS = ROOT / "docs" / "screenshots"
DEMO_URL_TIMEOUT_S = 180  # the services start (a bound for a condition, not a speed claim)
DEMO_DATA_TIMEOUT_S = 120


def _drain(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    """Read the demo's stdout into ``lines`` (a full pipe would block the demo)."""
    def run():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_lines(proc: subprocess.Popen, lines: list[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = next((ln for ln in list(lines) if needle in ln), None)
        if hit is not None:
            return hit
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {needle!r} from the demo within {timeout}s (exit {proc.poll()}): {lines[-30:]}")


def _cell_number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    return float(text) if text else None


def _first_next_qh_row(browser) -> dict[str, str] | None:
    cells = browser.execute_script("""
        const row = document.querySelector('#next-qh tr td.dash-cell[data-dash-column=qh]');
        if (!row) return null;
        const out = {};
        for (const td of row.parentElement.querySelectorAll('td.dash-cell')) out[td.dataset.dashColumn] = td.innerText;
        return out;""")
    return cells


def _shoot(browser, tmp_path: Path, name: str) -> Path:
    browser.execute_script("window.scrollTo(0, 0)")
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 20_000, f"{name}: an empty picture"
    if os.environ.get("INTRADAY_UPDATE_SCREENSHOT") == "1":  # refresh the README's pictures on demand
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def test_the_demo_at_its_default_speed_in_the_browser(fresh_db, browser, tmp_path):
    """``intraday demo`` at its default speed (60x from 06:00 Berlin): the printed login works,
    the next-QH table holds data soon after the URL is printed and its first row is what the
    database says, an alert is acknowledged through the page, the as-known-at handle sits at
    the live end, and each tab is kept as a screenshot (docs/screenshots/ on demand)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from intraday.platform.config import Settings

    port = free_port()
    env = dict(os.environ, DATABASE_URL=fresh_db, INTRADAY_STATE_DIR=str(tmp_path / "state"),
               INTRADAY_DASHBOARD_PORT=str(port))
    for k in ("KAFKA_BOOTSTRAP_SERVERS", "INTRADAY_AUTH", "INTRADAY_SECRET_KEY", "INTRADAY_USERS_FILE",
              "FLASK_DEBUG", "DASH_DEBUG"):
        env.pop(k, None)
    act_mwh = Settings.from_env(env).alert_imbalance_mwh
    lines: list[str] = []
    with open(tmp_path / "demo.stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "intraday.app.cli", "demo"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
    _drain(proc, lines)
    try:
        url_line = _wait_lines(proc, lines, "dashboard: http://127.0.0.1", DEMO_URL_TIMEOUT_S)
        printed = time.monotonic()
        url = url_line.split()[1]
        login = _wait_lines(proc, lines, "login: user 'desk'", 30)
        password = ast.literal_eval(re.search(r"password ('[^']*'|\"[^\"]*\")", login).group(1))
        wait_for_port(proc, port, tmp_path / "demo.stderr", START_TIMEOUT_S)
        wait = WebDriverWait(browser, DEMO_DATA_TIMEOUT_S, poll_frequency=0.25)

        browser.get(url + "/")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form input[name=username]")))
        browser.find_element(By.ID, "u").send_keys("desk")
        browser.find_element(By.ID, "p").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(lambda d: "/login" not in d.current_url)

        # the next quarter-hours, with data
        wait.until(lambda d: (_first_next_qh_row(d) or {}).get("qh"))
        desk_after_s = time.monotonic() - printed
        print(f"next-QH table with data {desk_after_s:.1f} s after the URL was printed")
        # its first row is the database's first tradeable QH at the clock (the page refreshes on
        # a tick while the clock runs at 60x: compare until the two agree, within a deadline)
        seen: list[tuple] = []

        def first_row_matches(d) -> bool:
            row = _first_next_qh_row(d)
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                clock = Q.replay_clock(conn)
                day = clock.tz_convert("Europe/Berlin").date()
                want = FR.next_qh_records(Q.query_portfolio(conn, day), Q.query_trading(conn, day), clock,
                                         act_mwh=act_mwh)
            if not row or not want:
                return False
            w = want[0]
            got = (row.get("qh"), _cell_number(row.get("open_mwh", "")), _cell_number(row.get("eur_at_risk", "")),
                   row.get("act", "").strip())
            expected = (w["qh"], w["open_mwh"], w["eur_at_risk"], w["act"])
            seen.append((got, expected))
            return got == expected

        try:
            wait.until(first_row_matches)
        except Exception:
            raise AssertionError(f"the first next-QH row never matched the database: {seen[-5:]}") from None
        assert seen[-1][0][0].endswith(("CEST", "CET")), seen[-1]  # the QH says its zone
        headers = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#next-qh th.dash-header")]
        assert any("to gate closure" in h for h in headers) and "EUR at risk" in headers, headers

        # live: the as-known-at handle at the live end
        def handle_at_live_end(d) -> bool:
            h = d.find_elements(By.CSS_SELECTOR, "#as-of [role=slider]")
            return bool(h) and h[0].get_attribute("aria-valuenow") == h[0].get_attribute("aria-valuemax") is not None

        wait.until(handle_at_live_end)
        _shoot(browser, tmp_path, "portfolio")

        # acknowledge an alert through the page; the database has it
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#alerts td.dash-select-cell input"))
        title = browser.find_element(By.ID, "alerts-title").text
        assert re.match(r"Alerts: \d+ open", title), title
        browser.find_element(By.CSS_SELECTOR, "#alerts td.dash-select-cell input").click()
        browser.find_element(By.ID, "ack-btn").click()
        wait.until(lambda d: "acknowledged" in d.find_element(By.ID, "ack-msg").text.lower())
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            acked = conn.execute("SELECT count(DISTINCT alert_id) FROM alerts WHERE acknowledged_by = 'desk'"
                                 ).fetchone()[0]
        assert acked == 1, (acked, browser.find_element(By.ID, "ack-msg").text)

        # the asset drill-down, then the performance report of the day in progress
        browser.find_element(By.XPATH, "//*[@id='tab']//*[normalize-space()='Asset drill-down']").click()
        wait.until(lambda d: d.execute_script(GRAPH_STATE_JS, ["asset-graph"])["asset-graph"]["points"] > 0)
        _shoot(browser, tmp_path, "asset")
        browser.find_element(By.XPATH, "//*[@id='tab']//*[normalize-space()='Performance report']").click()
        wait.until(EC.element_to_be_clickable((By.ID, "report-run"))).click()
        wait.until(lambda d: "quarter-hours" in d.find_element(By.ID, "report-msg").text)
        msg = browser.find_element(By.ID, "report-msg").text
        # the desk's delivery day (not the wall clock's), in progress since the replay began at 06:00
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            desk_day = Q.replay_clock(conn).tz_convert("Europe/Berlin").date().isoformat()
        assert msg.startswith(f"{desk_day} to {desk_day}"), msg
        done = re.search(r"(\d+) of (92|96|100) quarter-hours delivered", msg)
        assert done and int(done.group(1)) > 0, msg
        wait.until(lambda d: d.execute_script(GRAPH_STATE_JS, ["report-waterfall"])["report-waterfall"]["points"] > 0)
        assert browser.find_elements(By.CSS_SELECTOR, "#report-kpis td.dash-cell")
        _shoot(browser, tmp_path, "report")

        severe = [e for e in browser.get_log("browser")
                  if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")]
        assert not severe, severe
        assert proc.poll() is None, lines[-20:]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 0, (tmp_path / "demo.stderr").read_text()[-3000:]
