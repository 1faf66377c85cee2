"""The Connectors page in the Airflow UI, and Airflow's permissions on it, in a real headless browser.

One throwaway Airflow for the whole module (as ``test_ui_browser.py`` starts one: a fresh
home and SQLite DB under a temporary folder, a free loopback port, ``scripts/env.sh``'s
settings), with only the two services the page needs: the API server (UI, REST API, the
plugin's app) and the DAG processor (which stores ``inventory_sync``). No scheduler: a
resumed DAG starts no run, so the connectors' state is the DAG's paused flag.

The connectors are the scenario's file source and sink, renamed and on a unique topic, both run
by ``inventory_sync``. Their topic holds three records, the source's offset and the sink's
offset are set through the REST API (KIP-875 PATCH), so the page has offsets and a lag to show.
A third connector, a file sink of the same topic, is created at runtime (``POST /connectors``)
and runs in a DAG of its own, ``connector_<name>``.

Per-DAG permissions need an auth manager that has them; SimpleAuthManager (Airflow's default
here) has roles only, so this Airflow runs ``tests/dag_grants_auth_manager.py``: the same users
and roles, plus per-DAG grants. Three users, each with Airflow's USER role (which may change any
DAG under SimpleAuthManager): ``admin`` (no grants file entry: every DAG), ``reader`` (may read
``inventory_sync`` only) and ``outsider`` (may read and change the third connector's DAG only).

Screenshots go to the test's temporary folder and to ``.stack/ui-screenshots/``.
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
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = "/usr/bin/chromium"
DAG_ID = "inventory_sync"
SERVICES = ("api-server", "dag-processor")
SCREENSHOTS = ROOT / ".stack" / "ui-screenshots"
USERS = {"admin": "admin", "reader": "user", "outsider": "user"}  # name -> SimpleAuthManager role
INVENTORY = "ITEM001,SHOP001,929,2018-10-01 01:01:01\nITEM002,SHOP001,480,2018-10-01 01:01:01\n"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing (Debian's chromium package; scripts/setup.sh installs it)",
)


def free_port() -> int:
    """A free loopback port in 8700-8999 (the local stack's ports and 8080 are below it)."""
    for port in random.sample(range(8700, 9000), 300):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8700-8999")


class Airflow:
    """The API server and the DAG processor in their own process groups, logs under ``home``."""

    def __init__(self, home: Path, env: dict[str, str], port: int):
        self.home, self.env, self.port = home, env, port
        self.base = f"http://127.0.0.1:{port}"
        self.logs = home / "service-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.tokens: dict[str, str] = {}
        self.first_line = 0  # the source's offset the fixture sets: the inventory file's first line

    def start(self) -> None:
        for svc in SERVICES:
            args = [AIRFLOW, svc] + (["--host", "127.0.0.1", "--port", str(self.port)] if svc == "api-server" else [])
            with (self.logs / f"{svc}.out").open("wb") as log:
                self.procs[svc] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
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
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group
            except ProcessLookupError:
                pass

    def tails(self, lines: int = 30) -> str:
        out = []
        for svc in SERVICES:
            path = self.logs / f"{svc}.out"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            out.append(f"----- {svc} (exit code {self.procs[svc].poll()}), last {lines} lines of {path} -----")
            out.extend(line[:400] for line in text)
        return "\n".join(out)

    def api(self, method: str, path: str, user: str = "admin", **kwargs) -> httpx.Response:
        """A call with ``user``'s JWT (``POST /auth/token``, as a script would)."""
        if user not in self.tokens:
            r = httpx.post(f"{self.base}/auth/token", json={"username": user, "password": user}, timeout=30)
            assert r.status_code in (200, 201), f"POST /auth/token as {user}: {r.status_code} {r.text}"
            self.tokens[user] = r.json()["access_token"]
        return httpx.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {self.tokens[user]}"},
                             timeout=60, **kwargs)

    def wait_ready(self, timeout: float = 150) -> None:
        """The API server answers and the DAG processor has stored inventory_sync."""
        deadline = time.monotonic() + timeout
        while True:
            dead = {svc: p.returncode for svc, p in self.procs.items() if p.poll() is not None}
            if dead:
                pytest.fail(f"Airflow services exited early: {dead}\n{self.tails()}")
            try:
                if self.api("GET", f"/api/v2/dags/{DAG_ID}").status_code == 200:
                    return
            except (httpx.HTTPError, AssertionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{DAG_ID} was not served within {timeout:.0f} s\n{self.tails()}")
            time.sleep(1)

    def dag_paused(self) -> bool:
        r = self.api("GET", f"/api/v2/dags/{DAG_ID}")
        assert r.status_code == 200, r.text
        return r.json()["is_paused"]


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    u = uuid.uuid4().hex[:10]
    return {"source": f"load-page-{u}", "sink": f"sink-page-{u}", "topic": f"zaiko-page-{u}", "own": f"sink-own-{u}"}


def own_dag(names: dict[str, str]) -> str:
    return f"connector_{names['own']}"  # a connector created at runtime has a DAG of its own


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, names, kafka):
    """A throwaway Airflow with the test auth manager; its connectors have offsets and a lag."""
    base = tmp_path_factory.mktemp("connectors-page")
    home, defs, data = base / "airflow", base / "connectors", base / "data"
    for folder in (home, defs, data / "zaiko"):
        folder.mkdir(parents=True)
    (home / "passwords.json").write_text(json.dumps({user: user for user in USERS}))
    grants = home / "dag-grants.json"
    grants.write_text(json.dumps({"reader": {DAG_ID: "read"}, "outsider": {own_dag(names): "edit"}}))
    source = json.loads((ROOT / "include" / "connectors" / "load-zaiko-data.json").read_text())
    sink = json.loads((ROOT / "include" / "connectors" / "sink-zaiko-data.json").read_text())
    source["name"], source["config"]["topic"] = names["source"], names["topic"]
    sink["name"], sink["config"]["topics"] = names["sink"], names["topic"]
    (defs / "load.json").write_text(json.dumps(source))
    (defs / "sink.json").write_text(json.dumps(sink))
    (data / source["config"]["file"]).write_text(INVENTORY)

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIRFLOW_CONFIG", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")}
    for key, value in {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }.items():
        env.setdefault(key, value)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRCONNECT_API_PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # SimpleAuthManager's users and roles, plus per-DAG grants (tests/dag_grants_auth_manager.py).
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "tests"), env.get("PYTHONPATH")) if p),
        "AIRFLOW__CORE__AUTH_MANAGER": "dag_grants_auth_manager.DagGrantsAuthManager",
        "AIRCONNECT_TEST_DAG_GRANTS_FILE": str(grants),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRCONNECT_DATA_DIR": str(data),
        "AIRCONNECT_CONNECTORS_DIR": str(defs),
        "AIRCONNECT_INVENTORY_SYNC_CONNECTORS": f"{names['source']},{names['sink']}",
    })
    t0 = time.monotonic()
    step = lambda what: print(f"[{time.monotonic() - t0:5.1f} s] {what}")  # a timeline, shown when a test fails
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
    step("airflow db migrate done")
    af = Airflow(home, env, port)
    try:
        af.start()
        # Meanwhile: three records on the topic (the sink has read none of them yet).
        producer = Producer(kafka)
        for line in INVENTORY.splitlines() + ["ITEM003,SHOP001,6902,2018-10-02 02:02:02"]:
            producer.produce(names["topic"], value=line.encode())
        assert producer.flush(30) == 0
        af.wait_ready()
        step(f"Airflow on {af.base}, {DAG_ID} parsed")
        for name in (names["source"], names["sink"]):
            status = af.api("GET", f"/airconnect/connectors/{name}/status").json()
            assert status.get("dag_id") == DAG_ID, status
        # Offsets through the REST API (which, as Connect, changes them only while the connector is
        # STOPPED): the source has read the file's first line, the sink one record.
        for name in (names["source"], names["sink"]):
            r = af.api("PUT", f"/airconnect/connectors/{name}/stop")
            assert r.status_code == 202, f"PUT stop {name}: {r.status_code} {r.text}"
        first_line = len(INVENTORY.splitlines(keepends=True)[0].encode())
        for name, doc in (
            (names["source"], {"partition": {"filename": str(data / source["config"]["file"])}, "offset": {"position": first_line}}),
            (names["sink"], {"partition": {"kafka_topic": names["topic"], "kafka_partition": 0}, "offset": {"kafka_offset": 1}}),
        ):
            r = af.api("PATCH", f"/airconnect/connectors/{name}/offsets", json={"offsets": [doc]})
            assert r.status_code == 200, f"PATCH offsets of {name}: {r.status_code} {r.text}"
        af.first_line = first_line
        # The source paused, the sink left STOPPED (both run in inventory_sync, which is paused).
        r = af.api("PUT", f"/airconnect/connectors/{names['source']}/pause")
        assert r.status_code == 202, f"PUT pause {names['source']}: {r.status_code} {r.text}"
        # A third connector, created at runtime (POST /connectors): a sink of the same topic in a DAG
        # of its own, the one the outsider may read and change.
        r = af.api("POST", "/airconnect/connectors", json={"name": names["own"], "initial_state": "PAUSED", "config": {
            "connector.class": "FileStreamSink", "file": "ec/own.txt", "topics": names["topic"]}})
        assert r.status_code == 201, f"POST /connectors: {r.status_code} {r.text}"
        step(f"{names['own']} created")
        deadline = time.monotonic() + 90
        while (state := af.api("GET", f"/airconnect/connectors/{names['own']}/status").json()["connector"]["state"]) != "PAUSED":
            assert time.monotonic() < deadline, f"{own_dag(names)} was not parsed in 90 s ({state})\n{af.tails()}"
            time.sleep(1)
        step(f"{own_dag(names)} parsed")
        yield af
    except BaseException:
        print(af.tails())
        raise
    finally:
        af.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a shared 2-core machine: the UI may take a while to render
    with sync_playwright() as pw:
        # As root in a container Chromium's sandbox cannot start; /dev/shm may be tiny.
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, airflow: Airflow, user: str, path: str, color_scheme: str = "light"):
    """A new browser session signed in as ``user`` through Airflow's login form, on ``path``."""
    page = browser.new_context(viewport={"width": 1500, "height": 800}, color_scheme=color_scheme).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{airflow.base}{path}")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(path) + r"/?(\?.*)?$"))
    return page


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


def row_of(frame, name: str):
    return frame.locator(f"tr[data-connector='{name}']")


def test_the_page_shows_every_connector_and_its_buttons_act(airflow, browser, names, tmp_path):
    from playwright.sync_api import expect

    page = sign_in(browser, airflow, "admin", "/plugin/connectors")
    try:
        frame = page.frame_locator("iframe[title='Connectors']")
        source, sink = row_of(frame, names["source"]), row_of(frame, names["sink"])
        expect(source).to_be_visible()
        # Class, DAG, state per task, topics, offsets; the sink's lag: 3 records, 1 consumed.
        expect(source).to_contain_text("org.apache.kafka.connect.file.FileStreamSourceConnector")
        expect(sink).to_contain_text("org.apache.kafka.connect.file.FileStreamSinkConnector")
        for row in (source, sink):
            expect(row.get_by_role("link", name=DAG_ID)).to_have_attribute("href", f"/dags/{DAG_ID}")
            expect(row).to_contain_text(names["topic"])
        expect(source.locator(".state[data-state='PAUSED']")).to_have_count(2)  # the connector and its task 0
        expect(sink.locator(".state")).to_have_count(1)  # a STOPPED connector has no task (KIP-875)
        expect(sink.locator(".state[data-state='STOPPED']")).to_have_count(1)
        expect(source).to_contain_text(f"position={airflow.first_line}")
        expect(sink.locator("[data-lag]")).to_have_attribute("data-lag", "2")
        expect(sink).to_contain_text(f"{names['topic']}[0]: 1")
        expect(source.get_by_role("button", name=f"Pause {names['source']}")).to_be_disabled()
        shot(page, tmp_path, "connectors-page.png")
        assert airflow.dag_paused()

        # Resume: the DAG is unpaused in Airflow, the page says RUNNING (both connectors: one DAG).
        source.get_by_role("button", name=f"Resume {names['source']}").click()
        expect(frame.locator("#message")).to_have_text(f"{names['source']} resumed.")
        expect(sink.locator(".state[data-state='RUNNING']")).to_have_count(2)
        expect(source.locator(".state[data-state='RUNNING']")).to_have_count(2)
        assert not airflow.dag_paused()
        assert airflow.api("GET", f"/airconnect/connectors/{names['sink']}/status").json()["connector"]["state"] == "RUNNING"

        # Pause: paused again, in Airflow's DB and on the page.
        sink.get_by_role("button", name=f"Pause {names['sink']}").click()
        expect(source.locator(".state[data-state='PAUSED']")).to_have_count(2)
        expect(sink.locator(".state[data-state='PAUSED']")).to_have_count(2)
        assert airflow.dag_paused()
        assert airflow.api("GET", f"/airconnect/connectors/{names['source']}/status").json()["connector"]["state"] == "PAUSED"

        # Stop: the source alone is STOPPED (its task gone), as the REST API says.
        source.get_by_role("button", name=f"Stop {names['source']}").click()
        expect(source.locator(".state")).to_have_count(1)
        expect(source.locator(".state[data-state='STOPPED']")).to_have_count(1)
        assert airflow.api("GET", f"/airconnect/connectors/{names['source']}/status").json()["connector"]["state"] == "STOPPED"
        expect(sink.locator(".state[data-state='PAUSED']")).to_have_count(2)
        shot(page, tmp_path, "connectors-page-after-actions.png")
    except BaseException:
        shot(page, tmp_path, "connectors-page-failure.png")
        raise
    finally:
        page.context.close()


def test_a_dags_page_has_a_connectors_tab_with_its_connectors(airflow, browser, names, tmp_path):
    from playwright.sync_api import expect

    page = sign_in(browser, airflow, "admin", f"/dags/{DAG_ID}", color_scheme="dark")
    try:
        # The DAG's "Connectors" tab (the nav bar's "Connectors" links to /plugin/connectors).
        tab = page.locator(f"a[href$='/dags/{DAG_ID}/plugin/dag-connectors']")
        expect(tab).to_have_text("Connectors")
        tab.click()
        page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/plugin/dag-connectors"))
        frame = page.frame_locator("iframe[title='Connectors']")
        expect(frame.get_by_role("heading", name=f"Connectors of {DAG_ID}")).to_be_visible()
        expect(frame.locator("tr[data-connector]")).to_have_count(2)
        expect(frame.locator("html")).to_have_class(re.compile(r"\bdark\b"))  # follows Airflow's dark mode
        expect(row_of(frame, names["source"])).to_be_visible()
        expect(row_of(frame, names["sink"])).to_be_visible()
        shot(page, tmp_path, "dag-connectors-tab.png")
    except BaseException:
        shot(page, tmp_path, "dag-connectors-tab-failure.png")
        raise
    finally:
        page.context.close()


def test_permissions_a_reader_cannot_pause_and_an_outsider_sees_only_their_dags_connector(airflow, browser, names, tmp_path):
    from playwright.sync_api import expect

    connectors = (names["source"], names["sink"])
    # Without an Airflow session, neither the page nor the API answers (Connect's shape).
    for path in ("/airconnect/ui/connectors.html", "/airconnect/connectors", f"/airconnect/connectors/{names['sink']}/status"):
        r = httpx.get(f"{airflow.base}{path}", timeout=30)
        assert r.status_code == 401 and r.json()["error_code"] == 401, (path, r.status_code, r.text)
    assert airflow.api("PUT", f"/airconnect/connectors/{names['source']}/resume").status_code == 202
    try:
        # The reader may read the DAG: sees both connectors, but every change is a 403.
        assert sorted(airflow.api("GET", "/airconnect/connectors", "reader").json()) == sorted(connectors)
        assert airflow.api("GET", f"/airconnect/connectors/{names['sink']}/lag", "reader").status_code == 200
        for method, action in (("PUT", "pause"), ("PUT", "resume"), ("POST", "restart")):
            r = airflow.api(method, f"/airconnect/connectors/{names['source']}/{action}", "reader")
            assert r.status_code == 403 and r.json()["error_code"] == 403, (action, r.status_code, r.text)
            assert f"user reader may read DAG {DAG_ID} but not" in r.json()["message"], r.text
        r = airflow.api("DELETE", f"/airconnect/connectors/{names['sink']}/offsets", "reader")
        assert r.status_code == 403, r.text

        page = sign_in(browser, airflow, "reader", "/plugin/connectors")
        try:
            frame = page.frame_locator("iframe[title='Connectors']")
            source = row_of(frame, names["source"])
            expect(source.locator(".state[data-state='RUNNING']")).to_have_count(2)
            source.get_by_role("button", name=f"Pause {names['source']}").click()
            expect(frame.locator("#message")).to_contain_text(
                f"Pause {names['source']}: 403: Connector {names['source']}: user reader may read DAG {DAG_ID} but not change it")
            expect(source.locator(".state[data-state='RUNNING']")).to_have_count(2)
            expect(source.get_by_role("button", name=f"Pause {names['source']}")).to_be_enabled()  # reloaded
            shot(page, tmp_path, "connectors-page-reader.png")
        finally:
            page.context.close()
        assert not airflow.dag_paused()

        # The reader may not read the outsider's connector's DAG: it does not exist for them.
        r = airflow.api("GET", f"/airconnect/connectors/{names['own']}/status", "reader")
        assert r.status_code == 404 and r.json()["message"] == f"Connector {names['own']} not found", r.text

        # The outsider may not read inventory_sync: its connectors are not listed and do not exist for
        # them; the outsider sees and may change the one connector of the DAG granted to them.
        assert airflow.api("GET", "/airconnect/connectors", "outsider").json() == [names["own"]]
        assert list(airflow.api("GET", "/airconnect/connectors?expand=status&expand=info", "outsider").json()) == [names["own"]]
        for method, path in (("GET", ""), ("GET", "/status"), ("GET", "/config"), ("GET", "/offsets"), ("GET", "/topics"),
                             ("PUT", "/pause"), ("PUT", "/stop"), ("POST", "/restart"), ("DELETE", "/offsets"), ("DELETE", "")):
            for name in connectors:
                r = airflow.api(method, f"/airconnect/connectors/{name}{path}", "outsider")
                assert r.status_code == 404 and r.json() == {"error_code": 404, "message": f"Connector {name} not found"}, \
                    (method, path, r.status_code, r.text)
        page = sign_in(browser, airflow, "outsider", "/plugin/connectors")
        try:
            frame = page.frame_locator("iframe[title='Connectors']")
            own = row_of(frame, names["own"])
            expect(own.locator(".state[data-state='PAUSED']")).to_have_count(2)
            expect(frame.locator("tr[data-connector]")).to_have_count(1)
            expect(own.locator("[data-lag]")).to_have_attribute("data-lag", "3")  # the topic's 3 records, none consumed
            own.get_by_role("button", name=f"Resume {names['own']}").click()
            expect(own.locator(".state[data-state='RUNNING']")).to_have_count(2)
            shot(page, tmp_path, "connectors-page-outsider.png")
        finally:
            page.context.close()
        assert airflow.api("GET", f"/api/v2/dags/{own_dag(names)}").json()["is_paused"] is False
        assert not airflow.dag_paused()
        assert sorted(airflow.api("GET", "/airconnect/connectors").json()) == sorted([*connectors, names["own"]])  # admin: all
    finally:
        airflow.api("PUT", f"/airconnect/connectors/{names['source']}/pause")
