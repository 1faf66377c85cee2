// airconnect's Connectors page. No build step: plain JavaScript that calls the REST API next
// to it (Kafka Connect's paths, served by the plugin at /airconnect) with the browser's Airflow
// session (the UI's cookie). The server decides what this user may see and do: the list holds
// only connectors of DAGs the user may read, and an action the user may not take answers 403,
// shown here as the API's message.
"use strict";

(function () {
  // /airconnect/ui/connectors.html -> /airconnect (also behind a base URL with a path prefix).
  const API = location.pathname.replace(/\/ui\/[^/]*$/, "");
  const DAG_ID = new URLSearchParams(location.search).get("dag_id");
  const REFRESH_MS = 5000;
  const ACTIONS = [
    // label, method, path, when the button is enabled (by the connector's state)
    { label: "Pause", method: "PUT", path: "pause", enabled: (s) => s !== "PAUSED" && s !== "STOPPED", done: "paused" },
    { label: "Resume", method: "PUT", path: "resume", enabled: (s) => s === "PAUSED" || s === "STOPPED", done: "resumed" },
    { label: "Restart", method: "POST", path: "restart", enabled: () => true, done: "restarted" },
    { label: "Stop", method: "PUT", path: "stop", enabled: (s) => s !== "STOPPED", done: "stopped" },
  ];

  const $ = (id) => document.getElementById(id);
  let loading = false;
  let busy = false; // an action is in flight: no reload until it is answered

  function followTheme() {
    // The Airflow UI marks its <html> with class "dark"; the iframe follows it (same origin).
    let dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    try {
      if (window.parent !== window) dark = window.parent.document.documentElement.classList.contains("dark");
    } catch (e) { /* not in Airflow's frame */ }
    document.documentElement.classList.toggle("dark", dark);
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function call(method, path) {
    const response = await fetch(API + path, {
      method, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    const text = await response.text();
    let body = null;
    if (text) {
      try { body = JSON.parse(text); } catch (e) { body = text; }
    }
    if (!response.ok) {
      // Kafka Connect's shape {"error_code", "message"}; Airflow's {"detail"} just in case.
      const message = (body && (body.message || body.detail)) || response.statusText;
      throw new ApiError(response.status, `${response.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
    }
    return body;
  }

  const settle = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

  async function loadConnector(name) {
    const path = `/connectors/${encodeURIComponent(name)}`;
    const [status, info, topics, offsets] = await Promise.all([
      settle(call("GET", `${path}/status`)), settle(call("GET", path)),
      settle(call("GET", `${path}/topics`)), settle(call("GET", `${path}/offsets`)),
    ]);
    const type = (status.value && status.value.type) || (info.value && info.value.type);
    const lag = type === "sink" ? await settle(call("GET", `${path}/lag`)) : null;
    return { name, status, info, topics, offsets, lag, type };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const badge = (state) => el("span", { class: "state", "data-state": state, text: state });
  const failure = (result) => el("span", { class: "error-text", text: result.error.message });

  function stateCell(c) {
    if (c.status.error) return el("td", {}, failure(c.status));
    const s = c.status.value;
    const cell = el("td", {}, badge(s.connector.state));
    const tasks = el("div", { class: "tasks" });
    for (const task of s.tasks || []) {
      tasks.append(el("span", {}, `task ${task.id} `, badge(task.state), " "));
    }
    cell.append(tasks);
    const trace = s.connector.trace || (s.tasks || []).map((t) => t.trace).find(Boolean);
    if (trace) {
      cell.append(el("details", { class: "trace" }, el("summary", { text: "why" }), el("pre", { text: trace })));
    }
    return cell;
  }

  function topicsCell(c) {
    if (c.topics.error) return el("td", {}, failure(c.topics));
    const topics = (c.topics.value[c.name] || {}).topics || [];
    const list = el("ul", { class: "plain mono" });
    for (const topic of topics) list.append(el("li", { text: topic }));
    return el("td", {}, topics.length ? list : el("span", { class: "muted", text: "none yet" }));
  }

  function lagCell(c) {
    if (!c.lag) return el("td", { class: "muted", text: "\u2014" });
    if (c.lag.error) return el("td", {}, failure(c.lag));
    const total = c.lag.value.total_lag;
    const cell = el("td", {}, el("span", {
      class: total > 0 ? "lag-behind" : "lag-zero", "data-lag": String(total), text: `${total} record${total === 1 ? "" : "s"}`,
    }));
    const parts = el("ul", { class: "plain muted mono" });
    for (const p of c.lag.value.partitions || []) {
      parts.append(el("li", { text: `${p.topic}[${p.partition}]: ${p.lag}` }));
    }
    if (parts.childElementCount > 1) cell.append(parts);
    return cell;
  }

  function describe(map) {
    return Object.entries(map || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
  }

  function offsetsCell(c) {
    if (c.offsets.error) return el("td", {}, failure(c.offsets));
    const offsets = c.offsets.value.offsets || [];
    if (!offsets.length) return el("td", { class: "muted", text: "none yet" });
    const list = el("ul", { class: "plain mono offsets" });
    for (const { partition, offset } of offsets) {
      // A sink's offsets are per topic-partition; a source's partition and offset are its own maps.
      if (partition && "kafka_topic" in partition) {
        list.append(el("li", { text: `${partition.kafka_topic}[${partition.kafka_partition}]: ${offset ? offset.kafka_offset : "?"}` }));
      } else {
        list.append(el("li", {}, el("div", { class: "partition", text: describe(partition) }),
          el("div", { text: `\u2192 ${describe(offset)}` })));
      }
    }
    return el("td", {}, list);
  }

  function actionsCell(c) {
    const state = c.status.value ? c.status.value.connector.state : null;
    const box = el("div", { class: "actions" });
    for (const action of ACTIONS) {
      const button = el("button", {
        type: "button", "aria-label": `${action.label} ${c.name}`, title: `${action.method} ${API}/connectors/${c.name}/${action.path}`,
        disabled: state !== null && !action.enabled(state), text: action.label,
      });
      button.addEventListener("click", () => act(c.name, action, button));
      box.append(button);
    }
    return el("td", {}, box);
  }

  // A Java class name may wrap after each dot (<wbr>), not in the middle of a word.
  const breakable = (text) => text.split(".").flatMap((part, i) => (i ? [".", el("wbr"), part] : [part]));

  function row(c) {
    const dagId = c.status.value && c.status.value.dag_id;
    const cls = c.info.value ? c.info.value.config["connector.class"] : "";
    return el("tr", { "data-connector": c.name },
      el("td", {},
        el("div", { class: "name" }, c.name, c.type ? el("span", { class: "kind", text: c.type }) : null),
        el("div", { class: "class mono" }, ...breakable(cls))),
      el("td", { class: "dag-column" }, dagId ? el("a", { href: `/dags/${encodeURIComponent(dagId)}`, target: "_top", text: dagId }) : "\u2014"),
      stateCell(c), topicsCell(c), lagCell(c), offsetsCell(c), actionsCell(c));
  }

  // An action's answer stays until the next action or Refresh; a failed reload's until a good one.
  let sticky = false;

  function showMessage(text, kind, keep) {
    const box = $("message");
    box.hidden = !text;
    box.textContent = text || "";
    box.className = kind === "info" ? "info" : "";
    sticky = Boolean(text && keep);
  }

  let again = false; // a reload was asked for while one was running: run it after

  async function load() {
    if (loading || busy) {
      again = true;
      return;
    }
    loading = true;
    again = false;
    try {
      const names = await call("GET", "/connectors");
      let connectors = await Promise.all(names.map(loadConnector));
      if (DAG_ID) connectors = connectors.filter((c) => c.status.value && c.status.value.dag_id === DAG_ID);
      const body = $("connectors").tBodies[0];
      body.replaceChildren(...connectors.map(row));
      const counts = {};
      for (const c of connectors) {
        const s = c.status.value ? c.status.value.connector.state : "unknown";
        counts[s] = (counts[s] || 0) + 1;
      }
      $("summary").textContent = `${connectors.length} connector${connectors.length === 1 ? "" : "s"}` +
        (connectors.length ? ` (${Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ")})` : "");
      const empty = $("empty");
      empty.hidden = connectors.length > 0;
      $("connectors").hidden = connectors.length === 0;
      empty.textContent = DAG_ID
        ? `No connector of DAG ${DAG_ID} that you may see.`
        : "No connector that you may see: the list holds the connectors of the DAGs you may read.";
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      if (!sticky) showMessage("");
    } catch (error) {
      if (error.status === 401) showMessage("Your Airflow session has ended: sign in again (reload the Airflow UI).");
      else showMessage(`Could not list the connectors: ${error.message}`);
    } finally {
      loading = false;
      if (again && !busy) load();
    }
  }

  async function act(name, action, button) {
    busy = true;
    button.disabled = true;
    try {
      await call(action.method, `/connectors/${encodeURIComponent(name)}/${action.path}`);
      showMessage(`${name} ${action.done}.`, "info", true);
    } catch (error) {
      showMessage(`${action.label} ${name}: ${error.message}`, "error", true);
    } finally {
      busy = false;
    }
    await load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    followTheme();
    if (DAG_ID) {
      document.body.classList.add("one-dag");
      $("title").textContent = `Connectors of ${DAG_ID}`;
      document.title = `Connectors of ${DAG_ID} - airconnect`;
    }
    $("refresh").addEventListener("click", () => { showMessage(""); load(); });
    load();
    setInterval(() => { followTheme(); load(); }, REFRESH_MS);
  });
})();
