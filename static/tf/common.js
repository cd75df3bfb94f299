/* Helpers shared by every page: JSON fetches with the session, formatting, copy buttons. */
"use strict";
window.TF = (function () {
  function csrf() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(path, opts) {
    opts = Object.assign({ credentials: "same-origin", headers: {} }, opts || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers);
    if (opts.body && typeof opts.body !== "string") {
      opts.body = JSON.stringify(opts.body);
      opts.headers["Content-Type"] = "application/json";
    }
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRFToken"] = csrf();
    const res = await fetch(path, opts);
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      const err = new Error((data && data.error && data.error.message) || res.statusText);
      err.status = res.status; err.body = data; throw err;
    }
    return data;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    const m = Math.floor(ms / 60000);
    return m + " m " + Math.round((ms % 60000) / 1000) + " s";
  }
  function fmtNumber(n) { return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"); }
  function fmtCost(usd) {
    if (usd === null || usd === undefined || usd === "") return "";
    return "$" + Number(usd).toFixed(Number(usd) < 0.01 ? 5 : 4);
  }
  function badge(state, prefix) {
    return el("span", { class: `badge ${prefix || "state"}-${state}`, text: state });
  }
  async function copy(text, button) {
    try { await navigator.clipboard.writeText(text); }
    catch (e) {
      const ta = el("textarea", { style: "position:fixed;opacity:0" }); ta.value = text;
      document.body.append(ta); ta.select(); document.execCommand("copy"); ta.remove();
    }
    if (button) { const t = button.textContent; button.textContent = "copied"; setTimeout(() => { button.textContent = t; }, 1200); }
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-copy]");
    if (b) { e.preventDefault(); copy(b.dataset.copy, b); }
  });
  // ISO 8601 -> the value of an <input type=datetime-local>, in the browser's time zone
  // ("YYYY-MM-DDTHH:MM:SS"); "" for what is not a date.
  function localInput(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  // A run's step progress as a bar (runs list, run page); its title is the percentage.
  function progressBar(done, total) {
    const pct = total ? Math.round((100 * done) / total) : 0;
    return el("span", { class: "progress", title: `${pct}%` }, el("span", { style: `width:${pct}%` }));
  }
  return { api, el, csrf, fmtTime, fmtDuration, fmtNumber, fmtCost, badge, copy, localInput,
           progressBar,
           role: () => document.body.dataset.role || "" };
})();
