/* The project stream: live events of every run in a project, and the runs that changed. */
"use strict";
(function () {
  const { el, api, badge, fmtTime } = window.TF;
  const live = window.TF.live;
  const root = document.querySelector("#project-stream");
  const slug = root.dataset.slug;
  const runsBox = root.querySelector(".stream-runs");
  const runRows = new Map();   // run id -> row element
  const MAX_RUNS = 50;

  const timeline = live.timelineCard(root.querySelector(".timeline-card"), {
    maxRows: Number(root.dataset.timelineRows) || 2000,
    keepIds: false,
    renderRow: (ev) => {
      const row = live.eventRow(ev, el("span", { class: "ev-ctx" },
        el("a", { class: "run-link mono", href: `/runs/${ev.run_id}/`, title: ev.run_id, text: ev.run_id.slice(-8) })));
      row.dataset.runId = ev.run_id;
      return row;
    },
  });

  function noteRun(snap, latestAt, { append = false } = {}) {
    let row = runRows.get(snap.id);
    if (!row) {
      row = el("li", { class: "stream-run", dataset: { runId: snap.id } },
        el("a", { class: "mono", href: `/runs/${snap.id}/`, text: snap.id }),
        el("span", { class: "sr-state" }), el("span", { class: "sr-name" }),
        el("span", { class: "sr-progress muted" }), el("span", { class: "sr-time muted mono" }));
      runRows.set(snap.id, row);
    }
    if (snap.kind) row.querySelector(".sr-name").textContent = snap.name ? `${snap.name} · ${snap.kind}` : snap.kind;
    if (snap.state) {
      row.dataset.state = snap.state;
      row.querySelector(".sr-state").replaceChildren(badge(snap.state));
      row.querySelector(".sr-progress").textContent = snap.steps_total
        ? `${snap.steps_completed}/${snap.steps_total} steps` : `${snap.event_count} events`;
    }
    const at = latestAt || snap.latest_event_at;
    if (at) row.querySelector(".sr-time").textContent = live.clock(at);
    row.title = at ? `last event ${fmtTime(at)}` : "";
    if (append) runsBox.append(row); else runsBox.prepend(row);
    while (runsBox.children.length > MAX_RUNS) {
      const last = runsBox.lastElementChild;
      runRows.delete(last.dataset.runId);
      last.remove();
    }
    root.querySelector(".runs-empty").hidden = true;
  }

  // The runs under way when the page opened; live snapshots move changed runs to the top.
  api(`/api/v1/runs?project=${encodeURIComponent(slug)}&state=queued,running&limit=${MAX_RUNS}`)
    .then((page) => {
      for (const r of page.results) {
        const row = runRows.get(r.id);
        if (!row) noteRun(r, null, { append: true });
        else row.querySelector(".sr-name").textContent = r.name ? `${r.name} · ${r.kind}` : r.kind;
      }
    })
    .catch(() => {});

  window.TF.projectLive = live.connectPage(root.querySelector(".conn"), {
    ws: `/ws/projects/${encodeURIComponent(slug)}/`,
    sse: `/api/v1/projects/${encodeURIComponent(slug)}/events/stream`,
    poll: null,
    afterId: null,   // the server starts with the latest 100 events
    onRun: (snap) => noteRun(snap),
    onEvents: (events) => {
      timeline.add(events);
      const last = new Map();
      for (const ev of events) last.set(ev.run_id, ev.created_at);
      for (const [runId, at] of last) if (!runRows.has(runId)) noteRun({ id: runId }, at);
    },
  });
})();
