/* The live run page: status header, steps with their log panes, and the event timeline. */
"use strict";
(function () {
  const { el, api, badge, fmtTime, fmtDuration, fmtNumber } = window.TF;
  const live = window.TF.live;
  const root = document.querySelector("#run-page");
  const runId = root.dataset.runId;
  const canWrite = root.dataset.canWrite === "1";
  const STEP_LOG_LINES = 1000;
  const FINISHED = new Set(["succeeded", "failed", "canceled"]);
  const STEP_DONE = new Set(["succeeded", "failed", "skipped", "canceled"]);

  let run = JSON.parse(document.getElementById("run-data").textContent);
  const steps = new Map();      // id -> step dict (+ last_log)
  const stepLogs = new Map();   // step id ("" for the run itself) -> {lines: [], count, stderr}
  for (const s of JSON.parse(document.getElementById("steps-data").textContent)) steps.set(s.id, s);

  // --- header ------------------------------------------------------------------------------
  const header = root.querySelector(".run-header");
  const field = (name) => header.querySelector(`[data-f="${name}"]`);

  function durationOf(r) {
    if (!r.started_at) return "";
    const end = r.finished_at ? new Date(r.finished_at) : new Date();
    return fmtDuration(end - new Date(r.started_at)) + (r.finished_at ? "" : " so far");
  }

  function renderHeader() {
    field("state").replaceChildren(badge(run.state));
    root.dataset.state = run.state;
    field("attempt").textContent = `${run.attempt} of ${run.max_attempts}`;
    field("created").textContent = fmtTime(run.created_at);
    field("started").textContent = fmtTime(run.started_at) || "—";
    field("finished").textContent = fmtTime(run.finished_at) || "—";
    field("duration").textContent = durationOf(run) || "—";
    field("steps").replaceChildren(TF.progressBar(run.steps_completed, run.steps_total),
      ` ${run.steps_completed}/${run.steps_total}`);
    field("events").textContent = fmtNumber(run.event_count);
    field("errors").textContent = fmtNumber(run.error_count);
    field("errors").classList.toggle("level-error", run.error_count > 0);
    const errorBox = header.querySelector(".run-error");
    errorBox.hidden = !run.error;
    errorBox.querySelector("pre").textContent = run.error || "";
    const cancelNote = header.querySelector(".cancel-note");
    cancelNote.hidden = !run.cancel_requested_at || FINISHED.has(run.state);
    cancelNote.textContent = run.cancel_requested_at ? `cancel requested ${fmtTime(run.cancel_requested_at)}` : "";
    if (canWrite) {
      const box = header.querySelector(".cancel-box");
      box.hidden = FINISHED.has(run.state);
      box.querySelector(".force").hidden = !run.cancel_requested_at;
    }
  }

  function applySnapshot(snap) {
    const wasState = run.state;
    Object.assign(run, snap);
    delete run.steps;
    if (Array.isArray(snap.steps)) {
      for (const s of snap.steps) {
        const old = steps.get(s.id);
        if (old && s.last_log === undefined) s.last_log = old.last_log;
        if (old && old.last_log && s.last_log && old.last_log.id > s.last_log.id) s.last_log = old.last_log;
        steps.set(s.id, s);
      }
      renderSteps();
    }
    renderHeader();
    // The snapshot carries no error text and no names: fetch the full run when it finishes.
    if (snap.state !== wasState && (FINISHED.has(snap.state) || snap.state === "queued")) refreshRun();
  }

  async function refreshRun() {
    try { Object.assign(run, await api(`/api/v1/runs/${runId}`)); renderHeader(); }
    catch (e) { /* the next snapshot will do */ }
  }

  setInterval(() => { if (run.started_at && !run.finished_at) field("duration").textContent = durationOf(run); }, 1000);

  // --- cancel ------------------------------------------------------------------------------
  if (canWrite) {
    const box = header.querySelector(".cancel-box");
    const confirmBox = box.querySelector(".cancel-confirm");
    const status = box.querySelector(".cancel-status");
    box.querySelector(".cancel").addEventListener("click", () => { confirmBox.hidden = false; confirmBox.querySelector("input").focus(); });
    box.querySelector(".cancel-keep").addEventListener("click", () => { confirmBox.hidden = true; });
    const send = async (force) => {
      status.textContent = "";
      try {
        const reason = confirmBox.querySelector("input").value || "canceled from the run page";
        Object.assign(run, await api(`/api/v1/runs/${runId}/cancel`, { method: "POST", body: { reason, force } }));
        confirmBox.hidden = true;
        renderHeader();
      } catch (e) {
        status.textContent = e.status === 409 ? "The run has already finished." : `Cancel failed: ${e.message}`;
        refreshRun();
      }
    };
    box.querySelector(".cancel-go").addEventListener("click", () => send(false));
    box.querySelector(".force").addEventListener("click", () => send(true));
  }

  // --- steps -------------------------------------------------------------------------------
  const stepList = root.querySelector(".step-list");
  const stepNodes = new Map();

  function logsOf(stepId) {
    let logs = stepLogs.get(stepId);
    if (!logs) { logs = { lines: [], count: 0, stderr: 0 }; stepLogs.set(stepId, logs); }
    return logs;
  }

  function logLine(ev) {
    const stream = live.logStream(ev);
    return el("div", { class: `log-line ${stream}`, dataset: { id: ev.id, stream }, title: ev.created_at },
      el("span", { class: "log-time", text: live.clock(ev.created_at) }),
      el("span", { class: "log-text", text: live.text(ev.payload && ev.payload.text) }));
  }

  function stepDuration(s) {
    if (!s.started_at) return "";
    if (!s.finished_at) return "running";
    return fmtDuration(new Date(s.finished_at) - new Date(s.started_at));
  }

  function stepNode(stepId) {
    let node = stepNodes.get(stepId);
    if (node) return node;
    const pane = el("details", { class: "step-log" },
      el("summary", {}, el("span", { class: "pane-label", text: "Logs" }), " ", el("span", { class: "pane-count muted" })),
      el("div", { class: "log-lines mono" }));
    pane.addEventListener("toggle", () => { if (pane.open) fillPane(stepId); else pane.querySelector(".log-lines").replaceChildren(); });
    node = el("li", { class: "step", dataset: { stepId } },
      el("div", { class: "step-head" },
        el("span", { class: "step-pos muted" }), el("span", { class: "step-name" }),
        el("span", { class: "step-state" }), el("span", { class: "step-dur muted" })),
      el("div", { class: "step-error error" }),
      el("div", { class: "step-last mono" }),
      pane);
    stepNodes.set(stepId, node);
    return node;
  }

  function fillPane(stepId) {
    const node = stepNode(stepId);
    const box = node.querySelector(".log-lines");
    box.replaceChildren(...logsOf(stepId).lines.map(logLine));
    requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
  }

  function renderStep(s) {
    const node = stepNode(s.id);
    node.dataset.state = s.state;
    node.querySelector(".step-pos").textContent = `${s.position}.`;
    node.querySelector(".step-name").textContent = s.name;
    node.querySelector(".step-name").title = s.node_ref ? `${s.node_ref} · ${s.id}` : s.id;
    node.querySelector(".step-state").replaceChildren(badge(s.state));
    node.querySelector(".step-dur").textContent = stepDuration(s);
    node.querySelector(".step-error").textContent = s.error || "";
    node.querySelector(".step-error").hidden = !s.error;
    renderLastLog(s.id);
    return node;
  }

  function renderLastLog(stepId) {
    const node = stepNodes.get(stepId);
    if (!node) return;
    const s = steps.get(stepId) || { last_log: null };
    const logs = logsOf(stepId);
    const last = s.last_log;
    const box = node.querySelector(".step-last");
    box.hidden = !last;
    if (last) {
      box.className = `step-last mono ${last.stream || "stdout"}`;
      box.textContent = live.text(last.text);
      box.title = `last log line · ${last.stream} · ${last.created_at}`;
    }
    node.querySelector(".pane-count").textContent = logs.count
      ? `${fmtNumber(logs.count)} line${logs.count === 1 ? "" : "s"}` + (logs.stderr ? ` · ${fmtNumber(logs.stderr)} stderr` : "")
      : "none yet";
  }

  function renderSteps() {
    const ordered = Array.from(steps.values()).sort((a, b) => a.position - b.position || (a.id < b.id ? -1 : 1));
    const nodes = ordered.map(renderStep);
    const counts = { running: 0, succeeded: 0, failed: 0, pending: 0 };
    for (const s of ordered) counts[s.state] = (counts[s.state] || 0) + 1;
    if (stepLogs.has("")) nodes.push(runOutputNode());
    // Re-inserting a node resets its log pane's scroll position: only move when the order changed.
    const current = Array.from(stepList.children);
    if (current.length !== nodes.length || nodes.some((n, i) => current[i] !== n)) stepList.replaceChildren(...nodes);
    root.querySelector(".steps-empty").hidden = nodes.length > 0;
    const done = ordered.filter((s) => STEP_DONE.has(s.state)).length;
    const parts = [`${ordered.length} total`, `${done} done`];
    for (const state of ["running", "succeeded", "failed", "skipped", "canceled"]) {
      if (counts[state]) parts.push(`${counts[state]} ${state}`);
    }
    const summaryNode = root.querySelector(".step-counts");
    summaryNode.replaceChildren(...parts.map((p, i) => el("span", {
      class: i > 1 ? `count count-${p.split(" ")[1]}` : "count", text: p })));
  }

  function runOutputNode() {
    const node = stepNode("");
    node.classList.add("run-output");
    node.querySelector(".step-name").textContent = "Run output (no step)";
    node.querySelector(".step-state").replaceChildren();
    renderLastLog("");
    return node;
  }

  function noteLogs(events) {
    const touched = new Set();
    for (const ev of events) {
      if (ev.type !== "log") continue;
      const key = ev.step_id || "";
      const logs = logsOf(key);
      logs.lines.push(ev);
      if (logs.lines.length > STEP_LOG_LINES * 1.2) logs.lines.splice(0, logs.lines.length - STEP_LOG_LINES);
      logs.count += 1;
      if (live.logStream(ev) === "stderr") logs.stderr += 1;
      const s = steps.get(key);
      if (s && (!s.last_log || s.last_log.id < ev.id)) {
        s.last_log = { id: ev.id, text: ev.payload && ev.payload.text, stream: live.logStream(ev), created_at: ev.created_at };
      }
      touched.add(key);
      const node = stepNodes.get(key);
      if (node && node.querySelector(".step-log").open) {
        const box = node.querySelector(".log-lines");
        const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
        box.append(logLine(ev));
        while (box.children.length > STEP_LOG_LINES) box.firstElementChild.remove();
        if (stick) box.scrollTop = box.scrollHeight;
      }
    }
    if (touched.has("") && !stepNodes.has("")) renderSteps();
    for (const key of touched) renderLastLog(key);
  }

  // --- timeline ----------------------------------------------------------------------------
  const tlRoot = root.querySelector(".timeline-card");
  const timeline = new live.Timeline({
    scroller: tlRoot.querySelector(".timeline"),
    rows: tlRoot.querySelector(".timeline-rows"),
    maxRows: Number(root.dataset.timelineRows) || 2000,
    keepIds: true,
    renderRow: (ev) => {
      const s = ev.step_id ? steps.get(ev.step_id) : null;
      const ctx = el("span", { class: "ev-ctx", title: ev.step_id || "" }, s ? s.name : (ev.step_id ? ev.step_id.slice(0, 13) + "…" : ""));
      return live.eventRow(ev, ctx);
    },
    onChange: () => toolbar.update(),
  });
  const toolbar = live.bindToolbar(tlRoot, timeline, {
    loadEarlier: async (afterId, limit) => {
      const page = await api(`/api/v1/runs/${runId}/events?after_id=${afterId}&limit=${limit}`);
      return page.events;
    },
  });
  toolbar.update();
  renderSteps();
  renderHeader();

  // --- the connection ----------------------------------------------------------------------
  let pollCycle = 0;
  async function poll(afterId) {
    const page = await api(`/api/v1/runs/${runId}/events?after_id=${afterId}&limit=1000`);
    const items = page.events.map((event) => ({ type: "event", event }));
    const stepChange = page.events.some((e) => e.type.startsWith("step."));
    pollCycle += 1;
    if (page.events.length || pollCycle % 3 === 1) {
      const snap = await api(`/api/v1/runs/${runId}`);
      if (stepChange || pollCycle === 1 || snap.steps_total !== run.steps_total || snap.steps_completed !== run.steps_completed) {
        snap.steps = await api(`/api/v1/runs/${runId}/steps`);
      }
      items.push({ type: "run", run: snap });
    }
    return { items, more: page.events.length === 1000, finished: FINISHED.has(run.state) };
  }

  const conn = root.querySelector(".conn");
  const indicator = live.bindIndicator(conn);
  window.TF.runLive = live.connect({
    keepaliveMs: Number(conn.dataset.keepaliveMs) || undefined,
    ws: `/ws/runs/${runId}/`,
    sse: `/api/v1/runs/${runId}/events/stream`,
    poll,
    afterId: 0,
    onState: indicator,
    onFatal: (code) => { if (code === 4401) location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`); },
    onRun: applySnapshot,
    onEvents: (events) => {
      toolbar.noteTypes(events);
      noteLogs(events);
      timeline.add(events);
    },
  });
})();
