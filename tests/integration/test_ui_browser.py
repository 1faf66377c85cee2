"""Flow 1 through the Airflow UI, as a person does it, in a real headless browser.

The test starts its own Airflow (API server, scheduler, triggerer, DAG processor) as
subprocesses, against a fresh Airflow home and SQLite database under ``tmp_path``, on a free
loopback port (8700 or above), with the environment ``scripts/env.sh`` sets. The connector
definitions are the scenario's file source and file sink (``include/connectors``) with unique
names and a unique topic, and the data folder is a temporary one, so nothing is shared with
other tests or with a developer's Airflow.

Then Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) signs in as admin/admin,
opens ``inventory_sync``, presses Trigger and confirms the dialog. The DAG is paused at
creation and a paused DAG's queued runs never start, so the dialog's "Unpause inventory_sync
on trigger" box stays ticked. Unpausing also starts the DAG's ``@continuous`` schedule, so a
scheduled run may do the pass before the manual run (``max_active_runs=1``). Either order
must end the same way: the manual run succeeds, the EC file is byte-identical to the inventory
file and the topic holds each line once.

The screenshot of the successful run goes to ``tmp_path`` and to ``.stack/ui-screenshots/``.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from helpers import read_topic

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = "/usr/bin/chromium"
DAG_ID = "inventory_sync"
SERVICES = ("api-server", "scheduler", "triggerer", "dag-processor")
SCREENSHOTS = ROOT / ".stack" / "ui-screenshots"
# The tutorial's four inventory lines (../shared/scenario.md, scripts/demo.sh).
INVENTORY_LINES = (
    "ITEM001,SHOP001,929,2018-10-01 01:01:01\n"
    "ITEM002,SHOP001,480,2018-10-01 01:01:01\n"
    "ITEM001,SHOP001,25,2018-10-02 02:02:02\n"
    "ITEM003,SHOP001,6902,2018-10-02 02:02:02\n"
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing (Debian's chromium package; scripts/setup.sh installs it)",
)


def _free_port() -> int:
    """A free loopback port in 8700-8999 (the local stack's ports and 8080 are below it)."""
    candidates = list(range(8700, 9000))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8700-8999")


class Airflow:
    """The four Airflow services in their own process groups, with their logs under ``tmp_path``."""

    def __init__(self, home: Path, env: dict[str, str], port: int):
        self.home, self.env, self.port = home, env, port
        self.base = f"http://127.0.0.1:{port}"
        self.logs = home / "service-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    def start(self) -> None:
        for svc in SERVICES:
            args = [AIRFLOW, svc]
            if svc == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port)]
            with (self.logs / f"{svc}.out").open("wb") as log:
                self.procs[svc] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after 20 s."""
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # also any child left in the group
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def tails(self, lines: int = 40) -> str:
        out = []
        for svc in SERVICES:
            path = self.logs / f"{svc}.out"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            state = self.procs[svc].poll() if svc in self.procs else "not started"
            out.append(f"----- {svc} (exit code {state}), last {lines} lines of {path} -----")
            out.extend(line[:400] for line in text)
        return "\n".join(out)

    def check_alive(self) -> None:
        dead = {svc: p.returncode for svc, p in self.procs.items() if p.poll() is not None}
        if dead:
            pytest.fail(f"Airflow services exited early: {dead}\n{self.tails()}")

    def api(self, method: str, path: str, **kwargs):
        import httpx

        if self._token is None:
            r = httpx.post(f"{self.base}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
            assert r.status_code in (200, 201), f"POST /auth/token: {r.status_code} {r.text}"
            self._token = r.json()["access_token"]
        return httpx.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {self._token}"},
                             timeout=30, **kwargs)

    def wait_ready(self, timeout: float = 90) -> None:
        """Every service reports healthy, and the DAG processor has stored inventory_sync."""
        import httpx

        deadline = time.monotonic() + timeout
        health: object = None
        while True:
            self.check_alive()
            try:
                health = httpx.get(f"{self.base}/api/v2/monitor/health", timeout=5).json()
                if all((health.get(k) or {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Airflow was not healthy within {timeout:.0f} s (last health: {health})\n{self.tails()}")
            time.sleep(0.5)
        while True:
            self.check_alive()
            if self.api("GET", f"/api/v2/dags/{DAG_ID}").status_code == 200:
                return
            if time.monotonic() > deadline:
                errors = self.api("GET", "/api/v2/importErrors").text
                pytest.fail(f"{DAG_ID} was not parsed within {timeout:.0f} s; import errors: {errors}\n{self.tails()}")
            time.sleep(0.5)


@pytest.fixture
def scenario(tmp_path, unique):
    """Unique connector definitions (the scenario's, renamed, on a new topic) and data folder."""
    topic = f"zaiko-data-ui-{unique}"
    defs = tmp_path / "connectors"
    defs.mkdir()
    source = json.loads((ROOT / "include" / "connectors" / "load-zaiko-data.json").read_text())
    sink = json.loads((ROOT / "include" / "connectors" / "sink-zaiko-data.json").read_text())
    source["name"], source["config"]["topic"] = f"load-ui-{unique}", topic
    sink["name"], sink["config"]["topics"] = f"sink-ui-{unique}", topic
    (defs / "load.json").write_text(json.dumps(source))
    (defs / "sink.json").write_text(json.dumps(sink))
    data = tmp_path / "data"
    inventory = data / source["config"]["file"]  # relative paths are under AIRCONNECT_DATA_DIR
    ec = data / sink["config"]["file"]
    inventory.parent.mkdir(parents=True)
    return {"topic": topic, "defs": defs, "data": data, "inventory": inventory, "ec": ec,
            "source": source["name"], "sink": sink["name"]}


@pytest.fixture
def airflow(tmp_path, scenario):
    """A fresh Airflow home (SQLite), migrated, with the four services running; stopped afterwards."""
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text('{"admin": "admin"}')
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRFLOW_CONFIG", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")}
    # scripts/env.sh's settings (conftest.py already set the folders and connections in os.environ).
    for key, value in {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_CONN_AWS_FORECAST": json.dumps({
            "conn_type": "aws", "login": "airconnect", "password": "airconnect-secret",
            "extra": {"endpoint_url": f"http://127.0.0.1:{os.environ.get('AIRCONNECT_S3_PORT', '9000')}",
                      "region_name": "us-east-1"}}),
    }.items():
        env.setdefault(key, value)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRCONNECT_API_PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # One secret for every process: the API server signs the tokens the others present.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRCONNECT_DATA_DIR": str(scenario["data"]),
        "AIRCONNECT_CONNECTORS_DIR": str(scenario["defs"]),
        "AIRCONNECT_INVENTORY_SYNC_CONNECTORS": f"{scenario['source']},{scenario['sink']}",
    })
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
    af = Airflow(home, env, port)
    try:
        af.start()
        yield af
    finally:
        af.stop()


def test_trigger_inventory_sync_from_the_ui(airflow, scenario, kafka, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    t0 = time.monotonic()

    def step(what: str) -> None:  # a timeline in the captured output, shown when the test fails
        print(f"[{time.monotonic() - t0:5.1f} s] {what}")

    scenario["inventory"].write_text(INVENTORY_LINES)
    step(f"wrote {scenario['inventory']}; waiting for Airflow on {airflow.base}")
    airflow.wait_ready()
    step("Airflow healthy, inventory_sync parsed")
    screenshot = tmp_path / "inventory_sync-run.png"
    page = None
    try:
        with sync_playwright() as pw:
            # As root in a container Chromium's sandbox cannot start; /dev/shm may be tiny.
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(30_000)

                # Sign in: the UI sends an anonymous visitor to the login form, then back.
                page.goto(f"{airflow.base}/dags/{DAG_ID}")
                page.get_by_label("Username").fill("admin")
                page.get_by_label("Password").fill("admin")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/?(\?.*)?$"))

                # The DAG's page: its tasks are the renamed connectors.
                expect(page.get_by_text(scenario["source"], exact=True).first).to_be_visible()
                step("signed in, on the DAG's page")

                # Trigger -> the dialog; keep "Unpause ... on trigger" ticked (a paused DAG's runs never start).
                page.get_by_role("button", name="Trigger Dag", exact=True).click()  # the header's "Trigger"
                dialog = page.get_by_role("dialog")
                expect(dialog.get_by_role("heading", name=re.compile(rf"Trigger Dag\s*-\s*{DAG_ID}"))).to_be_visible()
                unpause = dialog.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger")
                if not unpause.is_checked():
                    dialog.get_by_text(f"Unpause {DAG_ID} on trigger").click()
                expect(unpause).to_be_checked()
                dialog.get_by_role("button", name="Trigger", exact=True).click()

                # The UI opens the new run's page: /dags/inventory_sync/runs/<run_id>.
                page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/?]+"))
                run_id = unquote(re.search(rf"/dags/{DAG_ID}/runs/([^/?#]+)", page.url).group(1))
                step(f"triggered {run_id}")

                run = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}").json()
                assert run["run_type"] == "manual" and run["triggering_user_name"] == "admin", run

                # Wait for the run to end (the REST API tells a failure early; the UI refreshes itself).
                deadline = time.monotonic() + 75
                while True:
                    airflow.check_alive()
                    run = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}").json()
                    if run["state"] in ("success", "failed"):
                        break
                    if time.monotonic() > deadline:
                        runs = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()
                        pytest.fail(f"run {run_id} is still {run['state']} after 75 s; runs: "
                                    f"{[(r['dag_run_id'], r['state']) for r in runs.get('dag_runs', [])]}")
                    time.sleep(1)
                if run["state"] != "success":
                    tis = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances").json()
                    pytest.fail(f"run {run_id} failed; task states: "
                                f"{[(t['task_id'], t['state']) for t in tis.get('task_instances', [])]}")

                step(f"run {run_id}: {run['state']}")
                # The run's page shows it: the state badge next to the run id, and every task succeeded.
                badge = page.locator(f"xpath=//h2[normalize-space()='{run_id}']"
                                     "/following-sibling::*[@data-testid='state-badge']")
                try:
                    expect(badge).to_have_text("Success", timeout=20_000)
                except AssertionError:
                    page.reload()
                    expect(badge).to_have_text("Success", timeout=20_000)
                for task in (f"wait-{scenario['source']}", scenario["source"], scenario["sink"]):
                    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=task, exact=True))
                    expect(row.get_by_text("Success", exact=True)).to_be_visible()
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                if page is not None and not screenshot.exists():
                    try:
                        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                        print(f"failure screenshot: {tmp_path / 'failure.png'}")
                    except Exception as exc:  # noqa: BLE001 - the original failure matters more
                        print(f"no failure screenshot: {exc}")
                browser.close()
    except BaseException:
        print(airflow.tails())
        raise
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOTS / "inventory_sync-run.png")

    # What the person came for: the EC site's file is the inventory file, byte for byte,
    # and each line went through the topic once (whichever run did the pass).
    assert scenario["ec"].exists(), f"{scenario['ec']} was not written\n{airflow.tails()}"
    assert scenario["ec"].read_bytes() == scenario["inventory"].read_bytes()
    assert len(read_topic(kafka, scenario["topic"])) == 4
