/* Live streams for the run pages: a connection client (WebSocket, then SSE, then polling) and a
   bounded, filterable event timeline with "follow live" / "pause autoscroll".

   TF.live.connect({ws, sse, poll, afterId, onEvents, onRun, onEnd, onState, onFatal})
     ws:   path of the WebSocket ("/ws/runs/<id>/"); the page's host and ws:/wss: are added.
     sse:  path of the Server-Sent Events stream, or null.
     poll: async (afterId) => ({items: [{type: "event", event} | {type: "run", run}], finished})
           or null; the last resort when neither WebSocket nor SSE work.
     afterId: the last event id already shown (null: let the server choose, e.g. latest 100).
     keepaliveMs: how often the server sends a keep-alive on a quiet stream; a WebSocket that
           hears nothing for STALE_KEEPALIVES of them is taken for dead and reopened.
   States (onState): "live" only while messages flow; "connecting" ("reconnecting…") while they
   do not; "sse"/"polling" on a fallback; "ended" once a finished run's stream ended (the page
   hides the badge); "offline" when the server refused.
   Events are de-duplicated by id and handed over in batches (onEvents(list), id order within a
   message stream); snapshots (onRun) keep their place between events. After each batch the
   client acknowledges what it processed (debounced, and at least every ACK_EVERY events), as the
   server stops sending after 1,000 unacknowledged events.

   TF.live.connectPage(conn, opts): connect() with the page's connection badge and login redirect.

   TF.live.Timeline: rows for events, at most `maxRows` in the DOM while following (twice that
   while paused); older rows can be loaded back on demand. TF.live.timelineCard wires one to the
   card of templates/includes/timeline_card.html.
*/
"use strict";
(function () {
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const WS_FAILURES_BEFORE_FALLBACK = 2;
  const ACK_DEBOUNCE_MS = 200;
  const ACK_EVERY = 500;
  const FLUSH_MS = 25;
  const POLL_MS = 1000;
  const SEEN_LIMIT = 50000;
  const FATAL_CLOSE = { 4401: "not logged in", 4403: "not allowed", 4404: "not found" };
  const RESYNC_CLOSE = 4008;
  const STALE_KEEPALIVES = 2.5;

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

  class LiveClient {
    constructor(opts) {
      this.o = opts;
      this.receivedId = opts.afterId === undefined ? null : opts.afterId;
      this.processedId = this.receivedId;
      this.ackedId = this.receivedId;
      this.unacked = 0;
      this.floor = -1;           // ids at or below this were pruned from `seen`: treat as seen
      this.seen = new Set();
      this.queue = [];
      this.flushTimer = null;
      this.ackTimer = null;
      this.backoff = BACKOFF_MIN_MS;
      this.wsFailures = 0;
      this.state = "";
      this.stopped = false;
      this.transport = null;
      this.lastHeard = 0;
      this.staleMs = (opts.keepaliveMs || 15000) * STALE_KEEPALIVES;
      this.staleTimer = setInterval(() => this.checkStale(), Math.min(this.staleMs / 4, 5000));
      const forced = new URLSearchParams(location.search).get("transport");
      if (forced === "sse" && opts.sse) this.openSse();
      else if (forced === "poll" && opts.poll) this.startPolling();
      else if (!window.WebSocket) this.fallback();
      else this.openWs();
    }

    setState(state, text) {
      this.state = state;
      if (this.o.onState) this.o.onState(state, text || "");
    }

    heard() {
      this.lastHeard = Date.now();
      if (this.transport === "ws" && this.state !== "live" && !this.stopped) this.setState("live", "live");
    }

    checkStale() {
      // A socket can stay "open" while nothing reaches it (a proxy or a network that dropped
      // it silently): after a few keep-alive periods of silence, say so and reopen it.
      if (this.stopped || this.transport !== "ws" || !this.ws || !this.lastHeard) return;
      if (Date.now() - this.lastHeard < this.staleMs) return;
      this.lastHeard = 0;
      this.setState("connecting", "reconnecting…");
      const ws = this.ws;
      ws.close();
    }

    end(msg) {
      // A finished run's stream ended: everything was delivered; nothing more will come.
      this.stopped = true;
      clearInterval(this.staleTimer);
      this.flush();
      if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
      if (this.es) { this.es.close(); this.es = null; }
      this.setState("ended", "");
      if (this.o.onEnd) this.o.onEnd(msg);
    }

    // --- messages ------------------------------------------------------------------------
    handle(msg) {
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "event" && msg.event) {
        const id = msg.event.id;
        if (id <= this.floor || this.seen.has(id)) return;
        this.seen.add(id);
        if (this.seen.size > SEEN_LIMIT) this.pruneSeen();
        if (this.receivedId === null || id > this.receivedId) this.receivedId = id;
        this.queue.push(msg);
      } else if (msg.type === "run" && msg.run) {
        this.queue.push(msg);
      } else if (msg.type === "resync" || msg.type === "keepalive") {
        // resync: the socket closes next (4008); reconnecting from the last id we hold loses
        // nothing. keepalive: only tells that the stream is alive.
        return;
      } else if (msg.type === "end") {
        this.end(msg);
        return;
      } else if (this.o.onMessage) {
        this.o.onMessage(msg);
      }
      if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
    }

    pruneSeen() {
      const ids = Array.from(this.seen).sort((a, b) => a - b);
      const keep = ids.slice(-SEEN_LIMIT / 2);
      this.floor = Math.max(this.floor, ids[ids.length - keep.length - 1]);
      this.seen = new Set(keep);
    }

    flush() {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
      const items = this.queue;
      this.queue = [];
      let events = [];
      const deliver = () => {
        if (!events.length) return;
        events.sort((a, b) => a.id - b.id);
        if (this.o.onEvents) this.o.onEvents(events);
        for (const ev of events) {
          if (this.processedId === null || ev.id > this.processedId) this.processedId = ev.id;
        }
        this.unacked += events.length;
        events = [];
      };
      for (const item of items) {
        if (item.type === "event") { events.push(item.event); continue; }
        deliver();
        if (this.o.onRun) this.o.onRun(item.run);
      }
      deliver();
      this.scheduleAck();
    }

    scheduleAck() {
      if (this.transport !== "ws" || this.processedId === this.ackedId) return;
      if (this.unacked >= ACK_EVERY) { this.sendAck(); return; }
      clearTimeout(this.ackTimer);
      this.ackTimer = setTimeout(() => this.sendAck(), ACK_DEBOUNCE_MS);
    }

    sendAck() {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN || this.processedId === null) return;
      ws.send(JSON.stringify({ type: "ack", last_id: this.processedId }));
      this.ackedId = this.processedId;
      this.unacked = 0;
    }

    withAfterId(path) {
      if (this.receivedId === null) return path;
      return path + (path.includes("?") ? "&" : "?") + "after_id=" + this.receivedId;
    }

    // --- WebSocket -----------------------------------------------------------------------
    openWs() {
      if (this.stopped) return;
      this.transport = "ws";
      this.setState("connecting", this.wsFailures ? "reconnecting…" : "connecting…");
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      let ws;
      try {
        ws = new WebSocket(`${scheme}//${location.host}${this.withAfterId(this.o.ws)}`);
      } catch (e) {
        this.fallback();
        return;
      }
      this.ws = ws;
      // A socket that closes before its first message counts as a failed attempt, whether or
      // not the handshake went through (some proxies accept and then drop WebSockets).
      let answered = false;
      ws.onopen = () => {
        this.ackedId = this.processedId;
        this.unacked = 0;
      };
      ws.onmessage = (m) => {
        if (!answered) { answered = true; this.wsFailures = 0; this.backoff = BACKOFF_MIN_MS; }
        this.heard();
        let msg;
        try { msg = JSON.parse(m.data); } catch (e) { return; }
        this.handle(msg);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        clearTimeout(this.ackTimer);
        if (this.stopped) return;
        if (FATAL_CLOSE[e.code]) {
          this.stopped = true;
          this.setState("offline", FATAL_CLOSE[e.code]);
          if (this.o.onFatal) this.o.onFatal(e.code);
          return;
        }
        if (e.code === RESYNC_CLOSE) { this.openWs(); return; }
        if (!answered) this.wsFailures += 1;
        if (this.wsFailures >= WS_FAILURES_BEFORE_FALLBACK && (this.o.sse || this.o.poll)) {
          this.fallback();
          return;
        }
        this.setState("connecting", "reconnecting…");
        const delay = this.backoff;
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
        setTimeout(() => this.openWs(), delay);
      };
    }

    fallback() {
      if (this.o.sse && window.EventSource) this.openSse();
      else if (this.o.poll) this.startPolling();
      else {
        // Nothing else to fall back to: keep trying the socket, slowly.
        this.setState("offline", "WebSocket unavailable, retrying…");
        this.wsFailures = 0;
        setTimeout(() => this.openWs(), BACKOFF_MAX_MS);
      }
    }

    // --- Server-Sent Events --------------------------------------------------------------
    openSse() {
      if (this.stopped) return;
      this.transport = "sse";
      this.setState("connecting", "connecting (SSE)…");
      const es = new EventSource(this.withAfterId(this.o.sse));
      this.es = es;
      let opened = false;
      const parse = (m) => { try { return JSON.parse(m.data); } catch (e) { return null; } };
      es.onopen = () => { opened = true; this.backoff = BACKOFF_MIN_MS; this.setState("sse", "live (SSE)"); };
      es.addEventListener("run", (m) => this.handle({ type: "run", run: parse(m) }));
      es.addEventListener("event", (m) => this.handle({ type: "event", event: parse(m) }));
      es.addEventListener("end", (m) => this.end(parse(m)));
      es.onerror = () => {
        if (this.es !== es) return;
        if (es.readyState !== EventSource.CLOSED) { this.setState("connecting", "reconnecting (SSE)…"); return; }
        this.es = null;
        if (!opened && this.o.poll) { this.startPolling(); return; }
        const delay = this.backoff;
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
        setTimeout(() => this.openSse(), delay);
      };
    }

    // --- polling -------------------------------------------------------------------------
    async startPolling() {
      this.transport = "poll";
      this.setState("polling", "polling");
      while (!this.stopped) {
        let wait = POLL_MS;
        try {
          const result = await this.o.poll(this.receivedId === null ? 0 : this.receivedId);
          for (const item of result.items) this.handle(item);
          this.flush();
          this.backoff = BACKOFF_MIN_MS;
          if (result.finished && !result.more) { this.end(null); return; }
          this.setState("polling", "polling");
          if (result.more) wait = 0;
        } catch (e) {
          if (e.status === 401 || e.status === 403 || e.status === 404) {
            this.stopped = true;
            this.setState("offline", e.status === 404 ? "not found" : "not allowed");
            return;
          }
          this.setState("offline", "offline, retrying…");
          wait = this.backoff;
          this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
        }
        await sleep(wait);
      }
    }

    close() {
      this.stopped = true;
      clearInterval(this.staleTimer);
      if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
      if (this.es) { this.es.close(); this.es = null; }
    }
  }

  // --- the timeline ------------------------------------------------------------------------
  const LEVEL_RANK = { debug: 0, info: 1, warn: 2, error: 3 };

  class Timeline {
    /* opts: {scroller, rows (parent of the row elements), maxRows, renderRow(ev) -> Element,
              onChange(timeline) (counters changed), keepIds (remember every id: load earlier)} */
    constructor(opts) {
      this.o = opts;
      this.scroller = opts.scroller;
      this.rows = opts.rows;
      this.maxRows = opts.maxRows || 2000;
      this.ids = [];          // every event id added, ascending (when keepIds)
      this.first = 0;         // rows in the DOM are ids[first..]
      this.newCount = 0;      // matching events that arrived while paused
      this.following = true;
      this.filter = { type: "", level: "", stream: "", step: "" };
      this.programmaticScroll = false;
      this.scroller.addEventListener("wheel", (e) => { if (e.deltaY < 0) this.pause(); }, { passive: true });
      this.scroller.addEventListener("scroll", () => {
        if (!this.following && this.atBottom()) { this.newCount = 0; this.changed(); }
      }, { passive: true });
    }

    get total() { return this.ids.length; }
    get hiddenBefore() { return this.first; }
    atBottom() { return this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 4; }
    changed() { if (this.o.onChange) this.o.onChange(this); }

    matches(row) {
      const f = this.filter, d = row.dataset;
      if (f.type && d.type !== f.type) return false;
      if (f.level && LEVEL_RANK[d.level] < LEVEL_RANK[f.level]) return false;
      if (f.stream && d.stream !== f.stream) return false;
      if (f.step && d.step !== f.step) return false;
      return true;
    }

    setFilter(filter) {
      Object.assign(this.filter, filter);
      for (const row of this.rows.children) row.hidden = !this.matches(row);
      this.newCount = 0;
      if (this.following) this.scrollToEnd();
      this.changed();
    }

    visibleCount() {
      let n = 0;
      for (const row of this.rows.children) if (!row.hidden) n += 1;
      return n;
    }

    makeRow(ev) {
      const row = this.o.renderRow(ev);
      row.dataset.id = ev.id;
      row.hidden = !this.matches(row);
      return row;
    }

    add(events) {
      if (!events.length) return;
      const limit = this.following ? this.maxRows : this.maxRows * 2;
      let fresh = [];
      for (const ev of events) {
        const last = this.ids.length ? this.ids[this.ids.length - 1] : -1;
        if (ev.id > last) { this.ids.push(ev.id); fresh.push(ev); }
        else this.insertLate(ev);
      }
      const excess = this.ids.length - this.first - limit;
      if (excess > 0) {
        const inDom = this.rows.children.length;
        this.trimTop(Math.min(excess, inDom));
        const skip = excess - Math.min(excess, inDom);
        if (skip > 0) { fresh = fresh.slice(skip); this.first += skip; }
      }
      const frag = document.createDocumentFragment();
      let matching = 0;
      for (const ev of fresh) {
        const row = this.makeRow(ev);
        if (!row.hidden) matching += 1;
        frag.append(row);
      }
      this.rows.append(frag);
      if (this.following) this.scrollToEnd();
      else this.newCount += matching;
      if (!this.o.keepIds && this.first > 100000) { this.ids = this.ids.slice(this.first); this.first = 0; }
      this.changed();
    }

    insertLate(ev) {
      // An event older than the newest one shown (commit order differed from id order).
      let lo = 0, hi = this.ids.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (this.ids[mid] < ev.id) lo = mid + 1; else hi = mid; }
      if (this.ids[lo] === ev.id) return;
      this.ids.splice(lo, 0, ev.id);
      if (lo < this.first) { this.first += 1; return; }
      const before = this.rows.children[lo - this.first];
      this.rows.insertBefore(this.makeRow(ev), before || null);
    }

    trimTop(n) {
      if (n <= 0) return;
      const before = this.scroller.scrollHeight;
      for (let i = 0; i < n && this.rows.firstElementChild; i++) this.rows.firstElementChild.remove();
      this.first += n;
      if (!this.following) this.scroller.scrollTop -= before - this.scroller.scrollHeight;
    }

    /* Events just before the first row shown: returns [afterId, limit] for the events API. */
    earlierWindow(size) {
      if (this.first <= 0) return null;
      const start = Math.max(0, this.first - size);
      return [start > 0 ? this.ids[start - 1] : 0, this.first - start];
    }

    prepend(events) {
      const rows = events.filter((ev) => {
        const i = this.first - 1;
        return i >= 0 && ev.id <= this.ids[i];
      });
      if (!rows.length) return;
      const before = this.scroller.scrollHeight;
      const frag = document.createDocumentFragment();
      for (const ev of rows) frag.append(this.makeRow(ev));
      this.rows.prepend(frag);
      this.first = Math.max(0, this.first - rows.length);
      this.scroller.scrollTop += this.scroller.scrollHeight - before;
      this.changed();
    }

    scrollToEnd() { this.scroller.scrollTop = this.scroller.scrollHeight; }

    pause() {
      if (!this.following) return;
      this.following = false;
      this.newCount = 0;
      this.changed();
    }

    follow() {
      this.following = true;
      this.newCount = 0;
      const over = this.ids.length - this.first - this.maxRows;
      if (over > 0) this.trimTop(over);
      this.scrollToEnd();
      this.changed();
    }

    clear() {
      this.rows.replaceChildren();
      this.first = this.ids.length;
      this.newCount = 0;
      this.changed();
    }
  }

  // --- shared rendering ----------------------------------------------------------------------
  const el = (...a) => window.TF.el(...a);

  function clock(iso) {
    // "12:34:56.789" (UTC): the date is in the row's title.
    if (!iso) return "";
    const m = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(iso);
    return m ? m[1] + (m[2] || ".000").padEnd(4, "0") : iso;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    if (typeof value === "object" && value.truncated && typeof value.preview === "string") {
      return value.preview + " … [truncated]";
    }
    return JSON.stringify(value);
  }

  function clip(s, n) { return s.length > n ? s.slice(0, n) + "…" : s; }

  /* One line saying what an event is about. */
  function summary(ev) {
    const p = ev.payload || {};
    if (typeof p !== "object") return clip(text(p), 300);
    if (p.truncated && p.preview) return clip(text(p), 300);
    switch (ev.type) {
      case "log": return text(p.text);
      case "progress": {
        const part = p.total ? `${p.completed ?? 0}/${p.total}` : (p.completed ?? "");
        return [part, text(p.message)].filter(Boolean).join(" · ");
      }
      case "llm_request": case "llm_response":
        return [p.model, p.input_tokens !== undefined ? `in ${p.input_tokens}` : "",
          p.output_tokens !== undefined ? `out ${p.output_tokens}` : "",
          clip(text(p.text || p.prompt || p.completion || p.content || ""), 200)].filter(Boolean).join(" · ");
      case "tool_call": case "tool_result":
        return [p.tool || p.name || p.tool_name, clip(text(p.args || p.arguments || p.result || p.output || ""), 200)]
          .filter(Boolean).join(" · ");
      default: {
        const msg = p.message || p.text || p.error || p.reason || p.name;
        if (msg) return clip(text(msg), 300);
        // The row shows the run and step already: leave their ids out of the summary.
        const rest = Object.entries(p).filter(([k]) => k !== "step_id" && k !== "run_id");
        return rest.map(([k, v]) => `${k}=${clip(text(v), 120)}`).join("  ");
      }
    }
  }

  function logStream(ev) {
    return ev.type === "log" ? ((ev.payload && ev.payload.stream) || "stdout") : "";
  }

  /* A timeline row; `extra` (an Element or null) goes between the type and the summary. */
  function eventRow(ev, extra) {
    const stream = logStream(ev);
    const row = el("div", {
      class: `ev lvl-${ev.level}` + (stream ? ` log ${stream}` : ""),
      dataset: { type: ev.type, level: ev.level, stream, step: ev.step_id || "" },
      title: `${ev.created_at} · #${ev.seq} · ${ev.source}`,
    },
    el("span", { class: "ev-time mono", text: clock(ev.created_at) }),
    el("span", { class: `ev-level level-${ev.level}`, text: ev.level }),
    el("span", { class: "ev-type mono", text: ev.type }),
    extra || el("span", { class: "ev-ctx" }),
    el("span", { class: "ev-text" + (ev.type === "log" ? " mono" : "") },
      stream === "stderr" ? el("span", { class: "stream-tag", text: "stderr" }) : null,
      summary(ev)));
    row.addEventListener("click", (e) => {
      if (e.target.closest("a, button") || window.getSelection().toString()) return;
      const open = row.querySelector(".ev-detail");
      if (open) { open.remove(); row.classList.remove("open"); return; }
      row.classList.add("open");
      row.append(el("pre", { class: "ev-detail mono", text: JSON.stringify({
        id: ev.id, event_id: ev.event_id, seq: ev.seq, source: ev.source, step_id: ev.step_id,
        correlation_id: ev.correlation_id, causation_id: ev.causation_id,
        truncated: ev.truncated, late: ev.late, payload: ev.payload,
      }, null, 2) }));
    });
    return row;
  }

  /* Wires the shared toolbar: filters, follow/pause, "N new events", "load earlier". */
  function bindToolbar(root, timeline, opts) {
    const $ = (sel) => root.querySelector(sel);
    const typeSel = $("[name=type]"), levelSel = $("[name=level]"), streamSel = $("[name=stream]");
    const followBtn = $(".follow"), pauseBtn = $(".pause"), newBtn = $(".new-events");
    const shown = $(".shown-count"), earlier = $(".load-earlier");
    const types = new Set();
    const read = () => ({ type: typeSel ? typeSel.value : "", level: levelSel ? levelSel.value : "",
      stream: streamSel ? streamSel.value : "" });
    for (const sel of [typeSel, levelSel, streamSel]) {
      if (sel) sel.addEventListener("change", () => timeline.setFilter(read()));
    }
    followBtn.addEventListener("click", () => timeline.follow());
    pauseBtn.addEventListener("click", () => timeline.pause());
    newBtn.addEventListener("click", () => timeline.follow());
    const update = () => {
      followBtn.setAttribute("aria-pressed", String(timeline.following));
      pauseBtn.setAttribute("aria-pressed", String(!timeline.following));
      newBtn.hidden = timeline.following || timeline.newCount === 0;
      newBtn.textContent = `${timeline.newCount} new event${timeline.newCount === 1 ? "" : "s"} ↓`;
      if (shown) {
        const inDom = timeline.rows.children.length, vis = timeline.visibleCount();
        shown.textContent = `${window.TF.fmtNumber(vis)} shown` +
          (vis !== inDom ? ` of ${window.TF.fmtNumber(inDom)} loaded` : "") +
          ` · ${window.TF.fmtNumber(timeline.total)} received`;
      }
      if (earlier) {
        earlier.hidden = !opts.loadEarlier || timeline.hiddenBefore === 0;
        earlier.textContent = `Load earlier events (${window.TF.fmtNumber(timeline.hiddenBefore)} not shown)`;
      }
      $(".timeline-empty").hidden = timeline.rows.children.length > 0;
    };
    if (earlier && opts.loadEarlier) {
      earlier.addEventListener("click", async () => {
        const win = timeline.earlierWindow(500);
        if (!win) return;
        earlier.disabled = true;
        try { timeline.prepend(await opts.loadEarlier(win[0], win[1])); }
        finally { earlier.disabled = false; }
      });
    }
    return {
      update,
      noteTypes(events) {
        if (!typeSel) return;
        let added = false;
        for (const ev of events) if (!types.has(ev.type)) { types.add(ev.type); added = true; }
        if (!added) return;
        const current = typeSel.value;
        typeSel.replaceChildren(el("option", { value: "", text: "all types" }),
          ...Array.from(types).sort().map((t) => el("option", { value: t, text: t })));
        typeSel.value = current;
      },
    };
  }

  function bindIndicator(node) {
    return (state, label) => {
      node.dataset.state = state;
      node.textContent = label || state;
      node.title = `connection: ${state}`;
    };
  }

  /* A timeline card (templates/includes/timeline_card.html) wired up: the Timeline over its rows
     and its toolbar. opts: {maxRows, keepIds, renderRow(ev) -> Element, loadEarlier (optional)}.
     add(events) shows a batch and offers its types in the toolbar's type filter. */
  function timelineCard(card, opts) {
    let toolbar = null;
    const timeline = new Timeline({
      scroller: card.querySelector(".timeline"),
      rows: card.querySelector(".timeline-rows"),
      maxRows: opts.maxRows,
      keepIds: opts.keepIds,
      renderRow: opts.renderRow,
      onChange: () => { if (toolbar) toolbar.update(); },
    });
    toolbar = bindToolbar(card, timeline, { loadEarlier: opts.loadEarlier });
    toolbar.update();
    return {
      timeline,
      toolbar,
      add(events) { toolbar.noteTypes(events); timeline.add(events); },
    };
  }

  /* connect() for a page with a connection badge (``conn``, with data-keepalive-ms): the badge
     shows the state, and a stream refused as "not logged in" sends the page to the login form. */
  function connectPage(conn, opts) {
    return new LiveClient(Object.assign({
      keepaliveMs: Number(conn.dataset.keepaliveMs) || undefined,
      onState: bindIndicator(conn),
      onFatal: (code) => {
        if (code === 4401) location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
      },
    }, opts));
  }

  window.TF = window.TF || {};
  window.TF.live = {
    connect: (opts) => new LiveClient(opts), connectPage, Timeline, timelineCard, eventRow,
    summary, clock, text, logStream, bindToolbar, bindIndicator,
  };
})();
