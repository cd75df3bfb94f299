/* The import page: post the chosen bundle to the API (import or dry replay) and draw the report.
   The upload goes to /api/v1/bundles/… with the session's CSRF token (page bodies are capped at
   1 MiB; API bodies at TRACEFOUNDRY_MAX_REQUEST_BYTES). */
"use strict";
(function () {
  const { el, csrf, fmtDuration, fmtNumber } = window.TF;
  const form = document.getElementById("bi-form");
  const fileInput = document.getElementById("bi-file");
  const project = document.getElementById("bi-project");
  const busy = document.getElementById("bi-busy");
  const errorBox = document.getElementById("bi-error");
  const out = document.getElementById("bi-report");
  let action = "import";

  form.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) action = button.dataset.action;
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!fileInput.files.length) return;
    const body = new FormData();
    body.append("file", fileInput.files[0]);
    const url = action === "import"
      ? "/api/v1/bundles/import?project=" + encodeURIComponent(project.value)
      : "/api/v1/bundles/dry-replay";
    errorBox.hidden = true;
    out.replaceChildren();
    setBusy(true);
    try {
      const res = await fetch(url, {
        method: "POST", body, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrf() },
      });
      const data = await res.json().catch(() => null);
      if (!res.ok) {
        showError((data && data.error && data.error.message) || `${res.status} ${res.statusText}`,
                  data && data.error && data.error.code);
        return;
      }
      out.append(action === "import" ? importReport(data) : replayReport(data));
    } catch (err) {
      showError(String(err));
    } finally {
      setBusy(false);
    }
  });

  function setBusy(on) {
    busy.hidden = !on;
    for (const b of form.querySelectorAll("button")) b.disabled = on;
  }

  function showError(message, code) {
    errorBox.replaceChildren(el("b", { text: code === "invalid_bundle" ? "Bundle refused: " : "Error: " }),
                             message);
    errorBox.dataset.code = code || "";
    errorBox.hidden = false;
  }

  function facts(pairs) {
    return el("dl", { class: "bi-facts" },
      pairs.filter(Boolean).map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", {}, v))));
  }

  function table(headers, rows, cls) {
    return el("table", { class: "list " + (cls || "") },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: headers.length, class: "muted", text: "none" }))));
  }

  function importReport(r) {
    const title = r.already_imported ? "Already imported: nothing new was stored" : "Imported";
    const c = r.counts;
    return el("div", { class: "bi-report", id: "bi-import-report", dataset: { alreadyImported: String(r.already_imported) } },
      el("div", { class: "card bi-summary" },
        el("h2", { text: title }),
        facts([
          ["Project", r.project],
          r.trace_id && ["Trace", el("a", { href: `/traces/${r.trace_id}/`, class: "mono", id: "bi-trace-link", text: r.trace_id })],
          r.run_id && ["Run", el("a", { href: `/runs/${r.run_id}/`, class: "mono", id: "bi-run-link", text: r.run_id })],
          r.original_run_id && ["Original run", el("span", { class: "mono", text: r.original_run_id })],
          ["Spans", fmtNumber(c.spans)],
          ["Run events", fmtNumber(c.run_events)],
          ["Payloads restored", fmtNumber(c.payloads) + (c.payloads_skipped ? ` (${c.payloads_skipped} skipped)` : "")],
          ["Tagged", `source=${r.source}, environment ${r.environment}`],
          ["Bundle", `${r.export_mode} export, redaction ${r.redaction_mode}`],
          r.run_closed && ["Note", "the run had not finished when exported: closed here as canceled"],
        ])));
  }

  function brief(s) { return el("span", { class: "mono", text: `${s.name} (${s.span_id})` }); }

  function replayReport(r) {
    const t = r.tree, p = r.payloads;
    const verdict = r.ok ? "No problems found" : `${r.findings.length} finding${r.findings.length === 1 ? "" : "s"}`;
    const parts = [
      el("div", { class: "card bi-summary" },
        el("h2", {}, "Dry replay: ", el("span", { class: "badge " + (r.ok ? "status-ok" : "status-error"), id: "bi-verdict", text: verdict })),
        facts([
          r.trace_id && ["Trace", el("span", { class: "mono", text: r.trace_id })],
          r.run_id && ["Run", el("span", { class: "mono", text: r.run_id })],
          ["Bundle", `format ${r.manifest.format_version}, ${r.manifest.export_mode} export, redaction ${r.manifest.redaction_mode}`],
          ["Exported", `${r.manifest.created_at} by ${r.manifest.product_version}`],
          ["Spans", fmtNumber(t.spans)],
          ["Depth", String(t.depth)],
          ["Roots", t.roots.length ? t.roots.map(brief) : "none"],
          ["Orphans", String(t.orphan_count)],
          ["Cycles", String(t.cycles.length)],
          ["Payloads", `${p.in_bundle} in the bundle, ${p.referenced} referred to, ${p.missing_count} missing, ${p.corrupt.length} corrupt` +
                       (p.left_out_by_export ? " (left out by the export)" : "")],
        ])),
      el("h2", { text: "Findings" }),
      table(["Kind", "Entry", "What"], r.findings.map((f) =>
        el("tr", { class: "bi-finding", dataset: { kind: f.kind } },
          el("td", { class: "mono", text: f.kind }), el("td", { class: "mono", text: f.entry }),
          el("td", { class: "wrap", text: f.message })))),
      el("h2", { text: "Spans per type" }),
      table(Object.keys(r.span_types), [el("tr", {}, Object.values(r.span_types).map((n) => el("td", { class: "num", text: String(n) })))], "bi-types"),
      el("h2", { text: "LLM and tool calls, in start order" }),
      table(["#", "Type", "Name", "Model / tool", "Status", "Start", "Duration"], r.calls.map((c, i) =>
        el("tr", { class: "bi-call" },
          el("td", { class: "num", text: String(i + 1) }), el("td", { text: c.type }),
          el("td", { text: c.name }), el("td", { class: "mono", text: c.model || c.tool || "" }),
          el("td", {}, el("span", { class: "badge status-" + c.status, text: c.status })),
          el("td", { class: "num", text: "+" + fmtDuration(c.start_offset_ms) }),
          el("td", { class: "num", text: fmtDuration(c.duration_ms) }))), "bi-calls"),
    ];
    if (r.run) {
      parts.push(el("h2", { text: "Run" }), facts([
        ["Run", el("span", { class: "mono", text: r.run.id || "" })],
        ["Kind", r.run.kind || ""], ["State", r.run.state || ""],
        ["Events", `${fmtNumber(r.run.events)} (${r.run.errors} errors)`],
        ["Types", Object.entries(r.run.event_types).map(([k, n]) => `${k} ${n}`).join(", ")],
      ]));
    }
    return el("div", { class: "bi-report", id: "bi-replay-report" }, parts);
  }
})();
