/* The runs list: the filters live in the page's query string and go to GET /api/v1/runs as is,
   so the page has exactly the API's filters and its cursors ("Newer" / "Older"). While the tab
   is visible the page asks again every REFRESH_MS and updates the rows that changed, so runs
   started, finished or created by any process (workers, the CLI) show without a reload. */
"use strict";
(function () {
  const { el, api, badge, fmtTime, fmtDuration, fmtNumber } = window.TF;
  const root = document.querySelector("#runs-page");
  const form = root.querySelector("form.filters");
  const body = root.querySelector("table.runs tbody");
  const status = root.querySelector(".runs-status");
  const FILTERS = ["project", "state", "kind", "q", "since", "before", "ordering", "trace_id"];
  const REFRESH_MS = 750;
  const shown = new Map();   // run id -> the JSON its row was drawn from


  function apiQuery(params) {
    const out = new URLSearchParams();
    for (const [k, v] of params) {
      if (!v) continue;
      if (k === "since" || k === "before") {
        const d = new Date(v);   // a datetime-local value is the browser's local time
        out.append(k, Number.isNaN(d.getTime()) ? v : d.toISOString());
      } else if (FILTERS.includes(k) || k === "cursor" || k === "limit") {
        out.append(k, v);
      }
    }
    return out;
  }

  function fillForm(params) {
    for (const name of ["project", "state", "kind", "q", "since"]) {
      const input = form.elements[name];
      const v = params.get(name) || "";
      if (input.tagName === "SELECT" && v && !Array.from(input.options).some((o) => o.value === v)) {
        input.append(el("option", { value: v, text: v }));
      }
      input.value = name === "since" && v ? TF.localInput(v) : v;
    }
  }

  function pageLink(apiUrl) {
    // The API's next/previous URL, turned into a link to this page with the same query.
    if (!apiUrl) return null;
    return `${location.pathname}?${new URL(apiUrl, location.href).searchParams.toString()}`;
  }

  function row(r) {
    const pct = r.steps_total ? Math.round((100 * r.steps_completed) / r.steps_total) : 0;
    const href = `/runs/${r.id}/`;
    return el("tr", { dataset: { runId: r.id, state: r.state } },
      el("td", { class: "mono" }, el("a", { href, text: r.id })),
      el("td", { class: "name-kind" }, el("a", { href, text: r.name || r.kind }),
        r.name ? el("span", { class: "muted mono kind", text: r.kind }) : null),
      el("td", { class: "mono" }, r.project),
      el("td", {}, badge(r.state), r.cancel_requested_at && r.state === "running"
        ? el("span", { class: "muted", text: " cancel requested" }) : null),
      el("td", { class: "progress-cell", title: r.steps_total ? `${pct}%` : "no steps" },
        TF.progressBar(r.steps_completed, r.steps_total),
        el("span", { class: "steps-count", text: r.steps_total ? ` ${r.steps_completed}/${r.steps_total}` : " –" })),
      el("td", { class: "num" }, r.max_attempts > 1 ? `${r.attempt}/${r.max_attempts}` : String(r.attempt)),
      el("td", { class: "num" }, fmtNumber(r.event_count)),
      el("td", { class: "num" + (r.error_count ? " level-error" : "") }, fmtNumber(r.error_count)),
      el("td", { class: "mono muted", title: r.created_at }, fmtTime(r.created_at)),
      el("td", { class: "num" }, r.duration_ms !== null ? fmtDuration(r.duration_ms)
        : (r.started_at && !r.finished_at ? "running" : "")));
  }

  async function load() {
    const params = new URLSearchParams(location.search);
    fillForm(params);
    status.textContent = "loading…";
    root.dataset.loaded = "0";
    try {
      const page = await api(`/api/v1/runs?${apiQuery(params)}`);
      draw(page.results);
      root.querySelector(".runs-empty").hidden = page.results.length > 0;
      for (const [cls, url] of [["prev", page.previous], ["next", page.next]]) {
        const a = root.querySelector(`.pager .${cls}`);
        const href = pageLink(url);
        a.hidden = !href;
        if (href) a.href = href;
      }
      status.textContent = `${page.results.length} run${page.results.length === 1 ? "" : "s"} on this page`;
    } catch (e) {
      body.replaceChildren();
      status.textContent = "";
      const empty = root.querySelector(".runs-empty");
      empty.hidden = false;
      empty.textContent = `Could not load runs: ${e.message}`;
    }
    root.dataset.loaded = "1";
  }

  function draw(results) {
    // Redraw only rows whose run changed (and the whole body when the runs or their order did),
    // so a refresh does not disturb a row being read or a link being clicked.
    const sameRuns = results.length === shown.size && results.every((r, i) => body.rows[i] && body.rows[i].dataset.runId === r.id);
    const json = results.map((r) => JSON.stringify(r));
    if (!sameRuns) {
      body.replaceChildren(...results.map(row));
    } else {
      results.forEach((r, i) => { if (shown.get(r.id) !== json[i]) body.rows[i].replaceWith(row(r)); });
    }
    shown.clear();
    results.forEach((r, i) => shown.set(r.id, json[i]));
  }

  let refreshing = false;
  async function refresh() {
    if (refreshing || document.hidden || root.dataset.loaded !== "1") return;
    refreshing = true;
    try {
      const page = await api(`/api/v1/runs?${apiQuery(new URLSearchParams(location.search))}`);
      draw(page.results);
      root.querySelector(".runs-empty").hidden = page.results.length > 0;
    } catch (e) {
      // A failed refresh keeps what is shown; the next one tries again.
    } finally {
      refreshing = false;
    }
  }
  setInterval(refresh, REFRESH_MS);

  form.addEventListener("submit", (e) => {
    // Empty fields stay out of the URL; "since" keeps the browser's local time as typed.
    e.preventDefault();
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) params.append(k, v);
    const ordering = new URLSearchParams(location.search).get("ordering");
    if (ordering) params.set("ordering", ordering);
    location.assign(`${location.pathname}${params.toString() ? "?" + params : ""}`);
  });
  for (const sel of form.querySelectorAll("select")) sel.addEventListener("change", () => form.requestSubmit());
  root.querySelector(".refresh").addEventListener("click", load);
  load();
})();
