/* The trace page: a virtualised span tree + waterfall (fixed row height; only the rows in view,
   plus a margin, are in the DOM, so a 10,000-span trace stays a few dozen rows), collapsible
   subtrees, and a span inspector that loads one span's attributes and events on click.

   Spans come from GET /api/v1/traces/{id}/spans?fields=compact in drawing order (depth-first,
   with depth), so a subtree is a contiguous range and collapsing is index arithmetic. */
"use strict";
(function () {
  const { api, el, fmtDuration, fmtNumber, fmtCost } = window.TF;
  const ROW_H = 24;            // keep in sync with .tv-row in traces.css
  const MARGIN = 30;           // rows drawn above and below the visible ones
  const MAX_INDENT = 24;       // deeper levels are drawn at this indent, with their depth shown
  const REF_PREFIX = "tracefoundry.payload.";
  // Mirrors traces/span_payloads.py: which attribute a <role>_ref stands for.
  const ROLE_KEYS = {
    input: ["input.value"], output: ["output.value"],
    prompt: ["gen_ai.prompt", "gen_ai.input.messages", "gen_ai.system_instructions", "llm.prompts", "llm.input_messages"],
    completion: ["gen_ai.completion", "gen_ai.output.messages", "llm.output_messages"],
    tool_args: ["gen_ai.tool.call.arguments", "tool.parameters"],
    tool_result: ["gen_ai.tool.call.result", "tool.output"],
  };

  const summary = document.getElementById("trace-summary");
  const traceId = summary.dataset.traceId;
  const scroller = document.getElementById("td-scroll");
  const spacer = document.getElementById("td-spacer");
  const axis = document.getElementById("td-axis");
  const inspector = document.getElementById("td-inspector");
  const rowCount = document.getElementById("td-rowcount");
  const findInput = document.getElementById("td-find");
  const findCount = document.getElementById("td-find-count");
  const canSeePayloads = JSON.parse(document.getElementById("tf-can-see-payloads").textContent) === true;

  let spans = [];              // compact spans, drawing order
  let end, parent, collapsed;  // per index: subtree end (exclusive), parent index, collapsed flag
  let visible = new Int32Array(0);
  let position = new Int32Array(0);  // index -> position in `visible`, -1 when hidden
  let totalMs = 1;
  let selected = -1;
  let rendered = [0, 0];       // the window of `visible` positions currently in the DOM
  let matches = [], matchSet = null, matchAt = -1;
  const rowsLayer = el("div", { class: "tv-rows" });
  const spanCache = new Map();

  // --- formatting ----------------------------------------------------------------------------
  document.querySelectorAll("[data-fact=duration]").forEach((n) => { n.textContent = fmtDuration(Number(n.dataset.ms)); });
  document.querySelectorAll("[data-fact=num]").forEach((n) => { n.textContent = fmtNumber(Number(n.textContent)); });
  document.querySelectorAll("[data-fact=cost]").forEach((n) => { n.textContent = Number(n.dataset.usd) ? fmtCost(n.dataset.usd) : "–"; });
  function fmtNs(ns) {
    return new Date(Number(BigInt(ns) / 1000000n)).toISOString().replace("T", " ").replace("Z", " UTC");
  }
  const TYPE_LABEL = { llm: "LLM", tool: "TOOL", agent: "AGENT", chain: "CHAIN", retriever: "RETR", other: "SPAN" };

  // --- the tree structure ----------------------------------------------------------------------
  function index() {
    const n = spans.length;
    end = new Int32Array(n); parent = new Int32Array(n); collapsed = new Uint8Array(n);
    const stack = [];
    for (let i = 0; i < n; i++) {
      const d = spans[i].depth;
      while (stack.length && spans[stack[stack.length - 1]].depth >= d) end[stack.pop()] = i;
      parent[i] = stack.length && d > 0 ? stack[stack.length - 1] : -1;
      stack.push(i);
      const stop = spans[i].start_offset_ms + spans[i].duration_ms;
      if (stop > totalMs) totalMs = stop;
    }
    while (stack.length) end[stack.pop()] = n;
  }
  function rebuildVisible() {
    const n = spans.length, out = new Int32Array(n);
    position = new Int32Array(n).fill(-1);
    let k = 0;
    for (let i = 0; i < n;) {
      position[i] = k; out[k++] = i;
      i = collapsed[i] ? end[i] : i + 1;
    }
    visible = out.subarray(0, k);
    spacer.style.height = `${k * ROW_H}px`;
    rowCount.textContent = k === n ? `(${fmtNumber(n)})` : `(${fmtNumber(k)} of ${fmtNumber(n)} shown)`;
    rendered = [0, 0];
  }
  function hasChildren(i) { return end[i] > i + 1; }
  function setCollapsed(i, value) {
    if (!hasChildren(i) || !!collapsed[i] === value) return;
    collapsed[i] = value ? 1 : 0;
    rebuildVisible(); draw(true);
  }
  function reveal(i) {  // expand every collapsed ancestor of i
    let changed = false;
    for (let p = parent[i]; p >= 0; p = parent[p]) if (collapsed[p]) { collapsed[p] = 0; changed = true; }
    if (changed) rebuildVisible();
  }

  // --- drawing ---------------------------------------------------------------------------------
  function drawAxis() {
    const ticks = [];
    for (let k = 0; k <= 4; k++) {
      ticks.push(el("span", { class: "tv-tick", style: `left:${k * 25}%` }, fmtDuration((totalMs * k) / 4)));
    }
    axis.replaceChildren(...ticks);
  }
  function rowFor(i) {
    const s = spans[i];
    const typ = s.span_type || "other";
    const err = s.status_code === "error";
    const left = (s.start_offset_ms / totalMs) * 100;
    const width = Math.max((s.duration_ms / totalMs) * 100, 0.15);
    const indent = Math.min(s.depth, MAX_INDENT);
    const sub = s.model || s.tool_name;
    const name = el("div", { class: "tv-name", style: `padding-left:${6 + indent * 14}px` },
      hasChildren(i)
        ? el("button", { type: "button", class: "tv-toggle", "aria-label": collapsed[i] ? "expand" : "collapse", "aria-expanded": collapsed[i] ? "false" : "true" }, collapsed[i] ? "▸" : "▾")
        : el("span", { class: "tv-leaf" }),
      s.depth > MAX_INDENT ? el("span", { class: "tv-depth", title: "depth" }, `L${s.depth}`) : null,
      el("span", { class: `tv-type t-${typ}` }, TYPE_LABEL[typ] || typ),
      el("span", { class: "tv-label", title: s.name }, s.name),
      sub && !s.name.includes(sub) ? el("span", { class: "tv-sub" }, sub) : null,
      collapsed[i] ? el("span", { class: "tv-hidden" }, `+${fmtNumber(end[i] - i - 1)}`) : null,
      s.is_retry ? el("span", { class: "mk mk-retry", title: "retry" }, "↻ retry") : null,
      s.is_timeout ? el("span", { class: "mk mk-timeout", title: "timeout" }, "◔ timeout") : null,
      err ? el("span", { class: "mk mk-error", title: "error status" }, "✕") : null);
    // The duration label goes right of the bar, else left of it, else inside a wide bar.
    const place = left + width <= 78 ? `left:${left + width}%` : left >= 18 ? `right:${100 - left}%`
      : `right:${100 - left - width}%`;
    const wf = el("div", { class: "tv-wf" },
      el("div", { class: `tv-bar t-${typ}${err ? " error" : ""}${s.is_timeout ? " timeout" : ""}${s.is_retry ? " retry" : ""}`, style: `left:${left}%;width:${width}%` },
        s.is_retry ? el("span", { class: "bar-mk retry", title: "retry" }, "↻") : null),
      el("span", { class: `tv-dur${left + width > 78 && left < 18 ? " inside" : ""}`, style: place }, fmtDuration(s.duration_ms),
        s.is_timeout ? el("span", { class: "bar-mk timeout", title: "timed out" }, " ◔ timeout") : null));
    const cls = ["tv-row"];
    if (i === selected) cls.push("selected");
    if (err) cls.push("error");
    if (matchSet && matchSet.has(i)) cls.push("match");
    return el("div", { class: cls.join(" "), role: "treeitem", "aria-level": s.depth + 1, "aria-selected": i === selected ? "true" : "false",
      dataset: { idx: i, spanId: s.span_id }, style: `top:${position[i] * ROW_H}px` }, name, wf);
  }
  function draw(force) {
    const t0 = performance.now();
    const first = Math.floor(scroller.scrollTop / ROW_H);
    const last = Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW_H);
    if (!force && first >= rendered[0] && last <= rendered[1]) return;
    const from = Math.max(0, first - MARGIN), to = Math.min(visible.length, last + MARGIN);
    const rows = [];
    for (let p = from; p < to; p++) rows.push(rowFor(visible[p]));
    rowsLayer.replaceChildren(...rows);
    rendered = [from === 0 ? 0 : from + MARGIN / 2, to === visible.length ? Infinity : to - MARGIN / 2];
    window.__tfRenders = (window.__tfRenders || 0) + 1;
    window.__tfLastRenderMs = performance.now() - t0;
  }
  let pending = false;
  scroller.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(false); });
  }, { passive: true });
  function fit() {  // the tree fills the window below its top (less for a short trace)
    const top = scroller.getBoundingClientRect().top + window.scrollY;
    const content = spans.length ? 28 + spans.length * ROW_H : Infinity;
    scroller.style.height = `${Math.max(Math.min(320, content), Math.min(window.innerHeight - top - 16, content))}px`;
  }
  window.addEventListener("resize", () => { fit(); draw(true); });
  fit();

  function scrollToIndex(i) {
    // Rows sit below the sticky header (the spacer's offset): keep the row clear of it.
    const head = spacer.offsetTop, top = head + position[i] * ROW_H;
    const from = scroller.scrollTop + head, to = scroller.scrollTop + scroller.clientHeight - ROW_H;
    if (top < from || top > to) scroller.scrollTop = Math.max(0, top - head - (scroller.clientHeight - head) / 2);
  }

  // --- interaction -------------------------------------------------------------------------------
  rowsLayer.addEventListener("click", (e) => {
    const row = e.target.closest(".tv-row");
    if (!row) return;
    const i = Number(row.dataset.idx);
    if (e.target.closest(".tv-toggle")) { setCollapsed(i, !collapsed[i]); return; }
    select(i);
  });
  scroller.addEventListener("keydown", (e) => {
    if (selected < 0 || !spans.length) return;
    const p = position[selected];
    let next = -1;
    if (e.key === "ArrowDown") next = visible[Math.min(p + 1, visible.length - 1)];
    else if (e.key === "ArrowUp") next = visible[Math.max(p - 1, 0)];
    else if (e.key === "ArrowRight") { setCollapsed(selected, false); e.preventDefault(); return; }
    else if (e.key === "ArrowLeft") {
      if (hasChildren(selected) && !collapsed[selected]) setCollapsed(selected, true);
      else if (parent[selected] >= 0) next = parent[selected];
    } else return;
    e.preventDefault();
    if (next >= 0) { select(next); scrollToIndex(next); draw(false); }
  });
  document.getElementById("td-expand").addEventListener("click", () => {
    collapsed.fill(0); rebuildVisible(); draw(true);
  });
  document.getElementById("td-collapse").addEventListener("click", () => {
    for (let i = 0; i < spans.length; i++) collapsed[i] = hasChildren(i) && spans[i].depth === 0 ? 0 : (hasChildren(i) ? 1 : 0);
    rebuildVisible(); scroller.scrollTop = 0; draw(true);
  });
  findInput.addEventListener("input", () => {
    const term = findInput.value.trim().toLowerCase();
    matches = [];
    if (term) {
      for (let i = 0; i < spans.length; i++) {
        const s = spans[i];
        if (s.name.toLowerCase().includes(term) || s.model.toLowerCase().includes(term) || s.tool_name.toLowerCase().includes(term) || s.span_id === term) matches.push(i);
      }
    }
    matchSet = term ? new Set(matches) : null;
    matchAt = -1;
    findCount.textContent = term ? `${fmtNumber(matches.length)} match${matches.length === 1 ? "" : "es"}${matches.length ? " · Enter for next" : ""}` : "";
    draw(true);
  });
  findInput.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !matches.length) return;
    e.preventDefault();
    matchAt = (matchAt + (e.shiftKey ? -1 : 1) + matches.length) % matches.length;
    const i = matches[matchAt];
    reveal(i); select(i); scrollToIndex(i); draw(true);
  });
  document.addEventListener("click", (e) => {
    const link = e.target.closest("[data-select-span]");
    if (!link) return;
    const i = spans.findIndex((s) => s.span_id === link.dataset.selectSpan);
    if (i < 0) return;
    e.preventDefault();
    reveal(i); select(i); scrollToIndex(i); draw(true);
  });

  function select(i) {
    selected = i;
    for (const row of rowsLayer.children) {
      const on = Number(row.dataset.idx) === i;
      row.classList.toggle("selected", on);
      row.setAttribute("aria-selected", on ? "true" : "false");
    }
    const url = new URL(location.href);
    url.searchParams.set("span", spans[i].span_id);
    history.replaceState(null, "", url);
    inspect(spans[i]);
  }

  // --- the inspector -----------------------------------------------------------------------------
  let inspecting = null;
  async function inspect(compact) {
    inspecting = compact.span_id;
    inspector.replaceChildren(el("h2", { class: "in-title" }, compact.name), el("p", { class: "muted" }, "Loading span…"));
    let span = spanCache.get(compact.span_id);
    if (!span) {
      try {
        span = await api(`/api/v1/spans/${compact.span_id}?trace_id=${traceId}`);
      } catch (err) {
        if (inspecting === compact.span_id) inspector.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not load the span: ${err.message}`));
        return;
      }
      spanCache.set(compact.span_id, span);
    }
    if (inspecting !== compact.span_id) return;
    inspector.replaceChildren(...inspectorBody(span, compact));
  }

  function refSha(value) {
    const m = typeof value === "string" && value.match(/^sha256:([0-9a-f]{64})$/i);
    return m ? m[1].toLowerCase() : null;
  }
  function payloadRef(value) {
    const sha = refSha(value);
    if (!sha) return el("span", {}, String(value));
    if (canSeePayloads) {
      return el("a", { class: "payload-link mono", href: `/api/v1/payloads/${sha}`, target: "_blank", rel: "noopener" }, `sha256:${sha.slice(0, 12)}… ↗`);
    }
    return el("span", { class: "mono muted", title: "payload contents are for engineers and admins" }, `sha256:${sha.slice(0, 12)}… (engineers only)`);
  }
  function value(v, key) {
    if (key && key.startsWith(REF_PREFIX) && key.endsWith("_ref")) return payloadRef(v);
    if (v === null || v === undefined) return el("span", { class: "muted" }, "null");
    const text = typeof v === "string" ? v : JSON.stringify(v, null, 2);
    if (text.length <= 400) return el("span", { class: typeof v === "string" ? "val" : "val mono" }, text);
    return el("details", { class: "val-long" }, el("summary", {}, text.slice(0, 200) + "…", el("span", { class: "muted" }, ` (${fmtNumber(text.length)} chars)`)), el("pre", { class: "val" }, text));
  }
  function kvTable(obj, cls) {
    const keys = Object.keys(obj || {}).sort();
    if (!keys.length) return el("p", { class: "muted" }, "none");
    return el("table", { class: `kv ${cls || ""}` }, el("tbody", {}, keys.map((k) =>
      el("tr", { dataset: { key: k } }, el("th", { class: "mono", title: k }, k), el("td", {}, value(obj[k], k))))));
  }
  function section(title, count, body, open) {
    return el("details", { class: "in-section", open: open !== false },
      el("summary", {}, title, count !== null && count !== undefined ? el("span", { class: "count" }, String(count)) : null), body);
  }
  function inspectorBody(span, compact) {
    const attrs = span.attributes || {};
    const startNs = BigInt(span.start_time_unix_nano);
    const badges = [el("span", { class: `badge t-${span.span_type}` }, span.span_type), " ",
      el("span", { class: `badge status-${span.status_code}` }, span.status_code)];
    if (span.is_retry) badges.push(" ", el("span", { class: "badge flag-retry", title: "this span is a retry" }, "↻ retry"));
    if (span.is_timeout) badges.push(" ", el("span", { class: "badge flag-timeout", title: "this span timed out" }, "◔ timeout"));
    const facts = [
      ["Span ID", el("span", {}, el("span", { class: "mono" }, span.span_id), " ", el("button", { type: "button", class: "copy", "data-copy": span.span_id }, "copy"))],
      ["Parent", span.parent_span_id ? el("a", { href: `?span=${span.parent_span_id}`, "data-select-span": span.parent_span_id, class: "mono" }, span.parent_span_id) : el("span", { class: "muted" }, "root")],
      ["Kind", span.kind], ["Service", span.service_name || "–"],
      ["Start", `+${fmtDuration(compact.start_offset_ms)} · ${fmtNs(span.start_time_unix_nano)}`],
      ["Duration", fmtDuration(span.duration_ms)],
    ];
    if (span.status_message) facts.push(["Status message", el("span", { class: "error" }, span.status_message)]);
    if (span.model) facts.push(["Model", span.model]);
    if (span.input_tokens !== null || span.output_tokens !== null) facts.push(["Tokens", `${fmtNumber(span.input_tokens || 0)} in · ${fmtNumber(span.output_tokens || 0)} out`]);
    if (span.cost_usd !== null && span.cost_usd !== undefined) facts.push(["Cost", fmtCost(span.cost_usd)]);
    if (span.tool_name) facts.push(["Tool", span.tool_name]);
    if (span.run_id) facts.push(["Run", el("a", { href: `/runs/${span.run_id}/`, class: "mono" }, span.run_id)]);

    const out = [
      el("h2", { class: "in-title", title: span.name }, span.name),
      el("div", { class: "in-badges" }, badges),
      el("dl", { class: "in-facts" }, facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v)))),
    ];

    // Payloads: every <role>_ref attribute, with the preview left under the original key.
    const refs = Object.keys(attrs).filter((k) => k.startsWith(REF_PREFIX) && k.endsWith("_ref")).sort();
    if (refs.length) {
      out.push(section("Payloads", refs.length, el("div", { class: "in-payloads" }, refs.map((k) => {
        const role = k.slice(REF_PREFIX.length, -4);
        const previewKey = (ROLE_KEYS[role] || [role]).find((name) => name in attrs) || (role in attrs ? role : null);
        return el("div", { class: "payload" },
          el("div", { class: "payload-head" }, el("span", { class: "badge" }, role), previewKey ? el("span", { class: "mono muted" }, previewKey) : null, payloadRef(attrs[k])),
          previewKey ? el("pre", { class: "payload-preview" }, String(attrs[previewKey])) : null,
          canSeePayloads ? null : el("p", { class: "muted small" }, "Preview only: payload contents are for engineers and admins."));
      }))));
    }

    out.push(section("Attributes", Object.keys(attrs).length, kvTable(attrs, "attrs")));

    const events = span.events || [];
    const flags = span.event_flags || [];  // per event, from the API (traces/genai.py)
    out.push(section("Events", events.length, events.length ? el("ol", { class: "in-events" }, events.map((e, i) => {
      const offset = Number(BigInt(e.time_unix_nano || 0) - startNs) / 1e6;
      const retry = Boolean(flags[i] && flags[i].is_retry), timeout = Boolean(flags[i] && flags[i].is_timeout);
      return el("li", { class: `in-event${retry ? " retry" : ""}${timeout ? " timeout" : ""}${e.name === "exception" ? " exception" : ""}` },
        el("div", { class: "ev-head" }, el("span", { class: "ev-time mono" }, e.time_unix_nano ? `+${fmtDuration(offset)}` : ""), el("strong", {}, e.name),
          retry ? el("span", { class: "mk mk-retry" }, "↻ retry") : null, timeout ? el("span", { class: "mk mk-timeout" }, "◔ timeout") : null),
        Object.keys(e.attributes || {}).length ? kvTable(e.attributes, "ev-attrs") : null);
    })) : el("p", { class: "muted" }, "none")));

    if ((span.links || []).length) {
      out.push(section("Links", span.links.length, el("ul", { class: "in-links" }, span.links.map((l) =>
        el("li", { class: "mono" }, l.trace_id === traceId ? el("a", { href: `?span=${l.span_id}`, "data-select-span": l.span_id }, l.span_id) : el("a", { href: `/traces/${l.trace_id}/?span=${l.span_id}` }, `${l.trace_id} / ${l.span_id}`))))));
    }
    out.push(section("Resource", Object.keys(span.resource || {}).length, kvTable(span.resource), false));
    if (span.scope && (span.scope.name || span.scope.version)) out.push(section("Scope", null, kvTable(span.scope), false));
    return out;
  }

  // --- loading -------------------------------------------------------------------------------------
  async function load() {
    let data;
    try {
      data = await api(`/api/v1/traces/${traceId}/spans?fields=compact`);
    } catch (err) {
      spacer.replaceChildren(el("p", { class: "error tv-loading", role: "alert" }, `Could not load spans: ${err.message}`));
      return;
    }
    spans = data.spans;
    window.__tfSpansLoaded = performance.now();
    if (!spans.length) { spacer.replaceChildren(el("p", { class: "muted tv-loading" }, "This trace has no spans.")); return; }
    index();
    drawAxis();
    spacer.replaceChildren(rowsLayer);
    rebuildVisible();
    fit();
    const wanted = new URLSearchParams(location.search).get("span");
    const at = wanted ? spans.findIndex((s) => s.span_id === wanted) : -1;
    if (at >= 0) { reveal(at); scrollToIndex(at); }
    draw(true);
    window.__tfFirstRender = performance.now();
    performance.mark("tf-first-render");
    if (at >= 0) select(at);
    document.body.dataset.spansReady = "1";
  }
  load();
})();
