/* The trace list: filters and sort live in the page's query string (shareable, reloadable);
   the rows come from GET /api/v1/traces with the same parameters, cursor-paginated. */
"use strict";
(function () {
  const { api, el, fmtDuration, fmtNumber, fmtCost, fmtTime, badge } = window.TF;
  const form = document.getElementById("trace-filters");
  const tbody = document.querySelector("#trace-table tbody");
  const status = document.getElementById("tl-status");
  const pager = document.getElementById("tl-pager");
  const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };
  // Page parameters handed to the API as they are; range, flag and the date inputs are mapped.
  const PASS = ["q", "status", "service", "environment", "model", "tool", "min_latency_ms",
    "max_latency_ms", "min_tokens", "min_cost", "sort", "cursor", "limit", "project", "run_id"];
  const FLAGS = ["has_error", "has_retry", "has_timeout"];
  const params = new URLSearchParams(location.search);

  // --- the form mirrors the query string ------------------------------------------------------
  function fillForm() {
    for (const [name, value] of params) {
      const field = form.elements[name];
      if (!field) continue;
      field.value = field.type === "datetime-local" ? TF.localInput(value) : value;
    }
    if (!params.get("range") && (params.get("since") || params.get("before"))) form.elements.range.value = "custom";
    for (const f of FLAGS) if (params.get(f) === "true") form.elements.flag.value = f;
    toggleCustom();
  }
  function toggleCustom() {
    form.classList.toggle("custom-range", form.elements.range.value === "custom");
  }
  form.elements.range.addEventListener("change", toggleCustom);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (!String(value).trim()) continue;
      if (name === "sort" && value === "newest") continue;
      if ((name === "since" || name === "before")) {
        if (form.elements.range.value !== "custom") continue;
        out.set(name, new Date(value).toISOString());
      } else if (name === "range" && value === "custom") {
        continue;
      } else {
        out.set(name, String(value).trim());
      }
    }
    location.assign(location.pathname + (out.toString() ? "?" + out : ""));
  });
  form.addEventListener("change", (e) => {  // selects apply at once; text fields on Enter/Apply
    if (e.target.tagName === "SELECT" && e.target.name !== "range") form.requestSubmit();
    if (e.target.name === "range" && e.target.value !== "custom") form.requestSubmit();
  });

  // --- sortable headers -------------------------------------------------------------------------
  const currentSort = params.get("sort") || "newest";
  for (const th of document.querySelectorAll("#trace-table th[data-sort]")) {
    const primary = th.dataset.sort, alt = th.dataset.sortAlt;
    const next = currentSort === primary && alt ? alt : primary;
    const q = new URLSearchParams(params); q.delete("cursor");
    if (next === "newest") q.delete("sort"); else q.set("sort", next);
    const active = currentSort === primary || currentSort === alt;
    const arrow = active ? (currentSort === "oldest" || currentSort === "fastest" ? " ↑" : " ↓") : "";
    const label = th.textContent;
    th.textContent = "";
    th.append(el("a", { href: "?" + q, class: active ? "sorted" : "", title: `sort: ${next.replace("_", " ")}` }, label + arrow));
  }

  // --- the API query ------------------------------------------------------------------------------
  function apiQuery() {
    const q = new URLSearchParams();
    for (const name of PASS) if (params.get(name)) q.set(name, params.get(name));
    const range = params.get("range");
    if (RANGES[range]) q.set("since", new Date(Date.now() - RANGES[range]).toISOString());
    else {
      if (params.get("since")) q.set("since", params.get("since"));
      if (params.get("before")) q.set("before", params.get("before"));
    }
    const flag = params.get("flag");
    if (FLAGS.includes(flag)) q.set(flag, "true");
    for (const f of FLAGS) if (params.get(f)) q.set(f, params.get(f));
    return q;
  }

  function fmtAgo(iso) {
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (s < 60) return `${Math.max(0, Math.round(s))}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }

  function row(t, maxDuration) {
    const href = `/traces/${t.trace_id}/`;
    const flags = [];
    if (t.has_retry) flags.push(el("span", { class: "badge flag-retry", title: "a span was retried" }, "↻ retry"));
    if (t.has_timeout) flags.push(el("span", { class: "badge flag-timeout", title: "a span timed out" }, "◔ timeout"));
    const width = maxDuration > 0 ? Math.max(2, (t.duration_ms / maxDuration) * 100) : 0;
    const chips = [...t.models.map((m) => el("span", { class: "chip chip-model" }, m)),
      ...t.tools.slice(0, 2).map((n) => el("span", { class: "chip chip-tool" }, n))];
    if (t.tools.length > 2) chips.push(el("span", { class: "muted" }, `+${t.tools.length - 2}`));
    return el("tr", { class: "tl-row", dataset: { traceId: t.trace_id, href } },
      el("td", {}, badge(t.status, "status")),
      el("td", { class: "tl-name" }, el("a", { href, class: "tl-open" }, t.root_span_name || "(no root span)"), " ", flags,
        t.run_id ? el("a", { href: `/runs/${t.run_id}/`, class: "tl-run", title: `run ${t.run_id}` }, "run ↗") : null),
      el("td", { class: "tl-id" },
        el("a", { href, class: "mono", title: t.trace_id }, t.trace_id.slice(0, 12) + "…"), " ",
        el("button", { type: "button", class: "copy", "data-copy": t.trace_id, title: "copy trace id", "aria-label": "copy trace id" }, "copy")),
      el("td", {}, t.service_name || "–", t.environment ? el("span", { class: "muted" }, " · " + t.environment) : null),
      el("td", { title: fmtTime(t.start_time) }, fmtAgo(t.start_time)),
      el("td", { class: "num" }, el("span", { class: "tl-dur" },
        el("span", { class: "tl-dur-bar" + (t.status === "error" ? " error" : ""), style: `width:${width}%` })), fmtDuration(t.duration_ms)),
      el("td", { class: "num" }, fmtNumber(t.span_count),
        t.error_count ? el("span", { class: "tl-err", title: `${t.error_count} error spans` }, `${t.error_count} err`) : null),
      el("td", { class: "num", title: `in ${fmtNumber(t.input_tokens)} / out ${fmtNumber(t.output_tokens)}` }, t.total_tokens ? fmtNumber(t.total_tokens) : "–"),
      el("td", { class: "num" }, Number(t.cost_usd) ? fmtCost(t.cost_usd) : "–"),
      el("td", { class: "tl-chips" }, chips.length ? chips : el("span", { class: "muted" }, "–")));
  }

  function pageLink(url, label, rel) {
    if (!url) return el("span", { class: "button disabled", "aria-disabled": "true" }, label);
    const cursor = new URL(url, location.origin).searchParams.get("cursor");
    const q = new URLSearchParams(params); q.set("cursor", cursor);
    return el("a", { class: "button", href: "?" + q, rel }, label);
  }

  async function load() {
    try {
      const data = await api("/api/v1/traces?" + apiQuery());
      const maxDuration = Math.max(0, ...data.results.map((t) => t.duration_ms));
      tbody.replaceChildren(...data.results.map((t) => row(t, maxDuration)));
      if (!data.results.length) {
        tbody.append(el("tr", { class: "tl-empty" }, el("td", { colspan: 10, class: "muted" },
          params.toString() ? "No traces match these filters." : "No traces yet: send spans to /otlp/v1/traces.")));
      }
      status.textContent = data.results.length ? `${data.results.length} traces on this page` : "";
      pager.replaceChildren(pageLink(data.previous, "← Newer", "prev"), pageLink(data.next, "Older →", "next"));
      if (params.get("sort") && params.get("sort") !== "newest") {
        pager.firstChild.textContent = "← Previous"; pager.lastChild.textContent = "Next →";
      }
    } catch (err) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "error", role: "alert" },
        `Could not load traces: ${err.message}` + (err.body && err.body.error && err.body.error.details ? " " + JSON.stringify(err.body.error.details) : ""))));
    }
  }

  tbody.addEventListener("click", (e) => {  // the whole row opens the trace
    if (e.target.closest("a, button")) return;
    const tr = e.target.closest("tr.tl-row");
    if (tr) location.assign(tr.dataset.href);
  });
  fillForm();
  load();
})();
