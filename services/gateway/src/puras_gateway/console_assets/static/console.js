// The Puras console. Every page is a shell served by the gateway; this script fills it from the
// public API (the same routes, rules and errors as any client), signed in by the session cookie
// and sending the CSRF token on every request that changes anything. No framework and no build
// step: the DOM is built with h(), which never parses strings as HTML.
"use strict";

const body = document.body;
const ctx = {
  page: body.dataset.page,
  workspace: body.dataset.workspace || null,
  role: body.dataset.role || null,
  job: /^[0-9a-f-]{36}$/.test(body.dataset.job || "") ? body.dataset.job : null,
  api: body.dataset.api || location.origin,
  csrf: document.querySelector('meta[name="csrf-token"]')?.content || "",
};

// ---------------------------------------------------------------------------------------------
// Basics: elements, formatting, errors, the API.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value); // CSSOM: allowed by the page's CSP
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

function replace(target, ...children) {
  const el = typeof target === "string" ? $(target) : target;
  if (el) el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// Micros are integers; they are shown as dollars without ever passing through a float.
function usd(micros) {
  const value = Number(micros || 0);
  const sign = value < 0 ? "-" : "";
  const abs = Math.abs(value);
  const whole = Math.floor(abs / 1e6);
  let frac = String(abs % 1e6).padStart(6, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${sign}$${whole.toLocaleString("en-US")}.${frac}`;
}

function usdToMicros(text) {
  const match = /^\s*(\d{1,9})(?:\.(\d{1,6}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 1e6 + Number((match[2] || "").padEnd(6, "0"));
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
}

function time(iso) {
  return h("time", { datetime: iso || "", title: iso ? new Date(iso).toLocaleString() : "" }, when(iso));
}

function duration(start, end) {
  if (!start) return "—";
  const ms = new Date(end || Date.now()) - new Date(start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

const ICONS = {
  folder: "M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z",
  file: "M6 3h8l5 5v13H6zM14 3v5h5",
  up: "M7 11v9H4v-9zM7 11l4-8a2 2 0 0 1 2 2v4h6a2 2 0 0 1 2 2l-2 7a2 2 0 0 1-2 2H7",
  down: "M17 13V4h3v9zM17 13l-4 8a2 2 0 0 1-2-2v-4H5a2 2 0 0 1-2-2l2-7a2 2 0 0 1 2-2h10",
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

const shortId = (id) => (id ? String(id).slice(-8) : "");
const badge = (text, kind) => h("span", { class: `badge ${kind || text}` }, text);
const json = (value) => JSON.stringify(value, null, 2);

class ApiFailure extends Error {
  constructor(status, error) {
    super(error?.message || `request failed with ${status}`);
    this.status = status;
    this.code = error?.code;
    this.details = error?.details;
  }
}

function toast(message, kind = "") {
  const el = h("div", { class: `toast ${kind}` }, message);
  $("#toasts")?.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

function report(error) {
  console.warn(error);
  toast(error.message || String(error), "error");
}

function apiUrl(path, query) {
  const url = new URL(path, location.origin);
  if (ctx.workspace && !url.searchParams.has("workspace")) url.searchParams.set("workspace", ctx.workspace);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

async function api(method, path, { query, json: payload, form, quiet401 } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = ctx.csrf;
  let requestBody;
  if (payload !== undefined) {
    headers["Content-Type"] = "application/json";
    requestBody = JSON.stringify(payload);
  } else if (form) {
    requestBody = form;
  }
  const response = await fetch(apiUrl(path, query), { method, headers, body: requestBody, credentials: "same-origin" });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    if (response.status === 401 && ctx.workspace && !quiet401) {
      location.assign(`/console/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new ApiFailure(response.status, data?.error);
  }
  return data;
}

function showError(el, error) {
  if (!el) return report(error);
  el.hidden = false;
  el.textContent = error.message;
}

function clearError(el) {
  if (el) { el.hidden = true; el.textContent = ""; }
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { class: "visually-hidden" }, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (button) {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }
}

function table(columns, rows, empty) {
  if (!rows.length) return h("div", { class: "empty" }, empty || "Nothing here yet.");
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class || "", scope: "col" }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.class || "" }, c.cell(row))))))));
}

function consoleLink(path) {
  return `/console/${encodeURIComponent(ctx.workspace)}${path}`;
}

const isOwner = () => ctx.role === "owner";

async function skillpackSelect(select, onChange) {
  const { data } = await api("GET", "/v1/skillpacks");
  const packs = data.length ? data.map((p) => p.slug) : ["default"];
  const wanted = new URLSearchParams(location.search).get("skillpack");
  replace(select, packs.map((slug) => h("option", { value: slug, selected: slug === wanted }, slug)));
  select.addEventListener("change", () => onChange(select.value));
  return select.value;
}

// ---------------------------------------------------------------------------------------------
// The shell: navigation, theme, workspace switcher, sign-out, and keeping the session alive.

function shell() {
  const toggle = $(".nav-toggle");
  toggle?.addEventListener("click", () => {
    const open = $("#nav").classList.toggle("open");
    $(".sidebar").classList.toggle("open", open);
    toggle.setAttribute("aria-expanded", String(open));
  });
  $("#theme-toggle")?.addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("puras-theme", next); } catch { /* storage blocked */ }
  });
  $("#workspace-switcher")?.addEventListener("change", (event) => {
    const rest = location.pathname.split("/").slice(3).join("/");
    location.assign(`/console/${encodeURIComponent(event.target.value)}${rest && !rest.startsWith("jobs/") ? "/" + rest : ""}`);
  });
  $$("#sign-out").forEach((button) => button.addEventListener("click", async () => {
    try { await api("POST", "/v1/auth/logout", { quiet401: true }); } catch { /* already ended */ }
    location.assign("/console/login");
  }));
  if (!isOwner()) $$(".owner-only").forEach((el) => { el.hidden = true; });
  if (ctx.workspace) {
    setInterval(async () => {
      try {
        const renewed = await api("POST", "/v1/auth/refresh");
        ctx.csrf = renewed.csrf_token;
      } catch (error) { report(error); }
    }, 10 * 60 * 1000);
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in and invitations.

function safeNext() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/console(\/[^/\\][^\\]*)?$/.test(next) && !next.startsWith("//") ? next : "/console";
}

function loginPage() {
  const form = $("#login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError($("#login-error"));
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/v1/auth/login", { json: { email: form.email.value, password: form.password.value } });
      location.assign(safeNext());
    } catch (error) {
      showError($("#login-error"), error);
      form.password.select();
    } finally {
      button.disabled = false;
    }
  });
}

async function invitePage() {
  const token = location.hash.slice(1);
  const form = $("#invite-form");
  const button = form.querySelector("button[type=submit]");
  let offer;
  try {
    offer = await api("POST", "/v1/auth/invitations/lookup", { json: { token } });
  } catch (error) {
    replace("#invite-offer", error.message);
    return;
  }
  replace("#invite-offer", "You are invited to ", h("strong", {}, offer.workspace.name), ` as ${offer.role}, with `, h("strong", {}, offer.email), ".");
  replace("#invite-hint", offer.account_exists ? "You already have an account: enter its password." : "Choose a password of 10 characters or more.");
  form.password.autocomplete = offer.account_exists ? "current-password" : "new-password";
  button.disabled = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError($("#invite-error"));
    button.disabled = true;
    try {
      await api("POST", "/v1/auth/invitations/accept", { json: { token, password: form.password.value } });
      location.assign(`/console/${encodeURIComponent(offer.workspace.slug)}`);
    } catch (error) {
      showError($("#invite-error"), error);
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Overview: balance, spend per day and per model, jobs per status, recent failures.

function dayChart(days) {
  const width = 600;
  const height = 200;
  const pad = { left: 44, right: 6, top: 10, bottom: 22 };
  const max = Math.max(1, ...days.map((d) => d.billed_micros));
  const step = (width - pad.left - pad.right) / days.length;
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  for (const fraction of [0, 0.5, 1]) {
    add("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(max * fraction), y2: y(max * fraction) });
    add("text", { class: "axis", x: pad.left - 6, y: y(max * fraction) + 3, "text-anchor": "end" }, usd(Math.round(max * fraction)).replace(/(\.\d\d)\d+$/, "$1"));
  }
  days.forEach((day, i) => {
    const top = y(day.billed_micros);
    const bar = add("rect", { class: "bar", x: pad.left + i * step + step * 0.15, y: top, width: step * 0.7, height: Math.max(day.billed_micros ? 1 : 0, height - pad.bottom - top), rx: 2 });
    const title = document.createElementNS(ns, "title");
    title.textContent = `${day.day}: ${usd(day.billed_micros)} in ${day.calls} calls`;
    bar.append(title);
    if (i % 5 === 0 || i === days.length - 1) {
      add("text", { class: "axis", x: pad.left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, day.day.slice(5));
    }
  });
  return svg;
}

async function overviewPage() {
  const [balance, spend, counts, failures] = await Promise.all([
    api("GET", "/v1/balance"),
    api("GET", "/v1/usage/summary", { query: { days: 30 } }),
    api("GET", "/v1/jobs/summary", { query: { days: 7 } }),
    api("GET", "/v1/jobs", { query: { status: "failed", limit: 5 } }),
  ]);
  replace("#balance", usd(balance.balance_micros + balance.pending_grants_micros));
  replace("#balance-note", balance.pending_grants_micros ? `${usd(balance.pending_grants_micros)} being credited` : `${balance.balance_micros.toLocaleString()} micros`);
  replace("#spend-total", usd(spend.total_micros));
  replace("#spend-calls", `${spend.by_day.reduce((n, d) => n + d.calls, 0).toLocaleString()} billed calls`);
  replace("#jobs-total", counts.total.toLocaleString());
  const ended = counts.by_status.succeeded + counts.by_status.failed;
  replace("#jobs-rate", ended ? `${Math.round((100 * counts.by_status.succeeded) / ended)}% succeeded` : "no finished jobs yet");
  replace("#chart-days", dayChart(spend.by_day));
  const top = Math.max(1, ...spend.by_model.map((m) => m.billed_micros));
  replace("#chart-models", spend.by_model.length
    ? spend.by_model.slice(0, 8).map((m) => h("div", { class: "bar-row" },
      h("span", {}, h("code", {}, m.model), " ", h("span", { class: "muted small" }, `${m.calls} calls`)),
      h("strong", {}, usd(m.billed_micros)),
      h("div", { class: "bar-track" }, h("div", { class: "bar-fill", style: { width: `${Math.max(2, (100 * m.billed_micros) / top)}%` } }))))
    : h("p", { class: "muted" }, "No billed calls in the last 30 days."));
  replace("#job-statuses", Object.entries(counts.by_status).map(([status, n]) =>
    h("a", { class: "status-cell", href: consoleLink(`/jobs?status=${status}`) }, badge(status), h("strong", {}, n.toLocaleString()))));
  replace("#failures", table([
    { label: "Job", cell: (j) => h("a", { href: consoleLink(`/jobs/${j.id}`), class: "mono" }, shortId(j.id)) },
    { label: "Skill", cell: (j) => `${j.skillpack}/${j.skill_name}` },
    { label: "Error", cell: (j) => h("span", { class: "small" }, (j.error || "").slice(0, 120)) },
    { label: "When", cell: (j) => time(j.finished_at || j.created_at) },
  ], failures.data, "No failed jobs."));
}

// ---------------------------------------------------------------------------------------------
// Deployments: push with the build log, versions, activate, roll back, delete, skill schemas.

async function deploymentsPage() {
  const select = $("#skillpack");
  let pack = await skillpackSelect(select, (value) => { pack = value; loadVersions(); });

  async function loadVersions() {
    let listing;
    try {
      listing = await api("GET", "/v1/deployments", { query: { skillpack: pack, limit: 50 } });
    } catch (error) {
      return replace("#versions", h("div", { class: "empty" }, error.message));
    }
    const active = listing.data.find((d) => d.active);
    replace("#versions", listing.data.length ? listing.data.map((d) => versionCard(d, active)) : h("div", { class: "empty" }, "No deployments yet: push a project."));
  }

  function versionCard(d, active) {
    const older = active && d.version < active.version;
    const actions = h("div", { class: "row" },
      d.active ? badge("active") : null,
      !d.active && d.status === "ready" ? h("button", { type: "button", class: "small", onclick: () => activate(d, older) }, older ? "Roll back to this" : "Activate") : null,
      !d.active ? h("button", { type: "button", class: "small danger", onclick: () => remove(d) }, "Delete") : null);
    return h("details", { class: "version", open: d.active || null },
      h("summary", {},
        h("strong", {}, `v${d.version}`), " ", badge(d.status), " ",
        h("span", { class: "muted" }, d.notes || "no notes"), " ",
        h("span", { class: "muted small" }, `· ${d.skills.length} skill${d.skills.length === 1 ? "" : "s"} · `, time(d.created_at))),
      h("div", { class: "version-body" },
        actions,
        d.error ? h("p", { class: "form-error" }, d.error) : null,
        table([
          { label: "Skill", cell: (s) => h("span", {}, h("strong", {}, s.name), h("span", { class: "sub" }, s.description || "")) },
          { label: "Kind", cell: (s) => badge(s.kind, "idle") },
          { label: "Entrypoint", class: "hide-narrow", cell: (s) => h("code", {}, s.entrypoint) },
          { label: "Schemas", cell: (s) => schemaDetails(s) },
          { label: "", class: "actions", cell: (s) => d.active ? h("a", { class: "button small", href: consoleLink(`/playground?skillpack=${encodeURIComponent(pack)}&skill=${encodeURIComponent(s.name)}`) }, "Try it") : null },
        ], d.skills, "No skills in this version.")));
  }

  function schemaDetails(skill) {
    return h("details", { class: "schema" }, h("summary", { class: "small" }, "input / output"),
      h("pre", { class: "code" }, `input_schema: ${json(skill.input_schema ?? null)}\n\noutput_schema: ${json(skill.output_schema ?? null)}`));
  }

  async function activate(d, older) {
    if (older && !confirm(`Roll ${pack} back to version ${d.version}? New jobs will run it; jobs already submitted keep theirs.`)) return;
    try {
      await api("POST", `/v1/deployments/${d.id}/activate`);
      toast(`Version ${d.version} is active`, "ok");
      loadVersions();
    } catch (error) { report(error); }
  }

  async function remove(d) {
    if (!confirm(`Delete version ${d.version} of ${pack}? This cannot be undone.`)) return;
    try {
      await api("DELETE", `/v1/deployments/${d.id}`);
      toast(`Version ${d.version} deleted`, "ok");
      loadVersions();
    } catch (error) { report(error); }
  }

  const form = $("#push-form");
  const drop = $("#bundle-drop");
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, () => drop.classList.add("over"));
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  form.bundle.addEventListener("change", () => {
    const file = form.bundle.files[0];
    replace(drop.querySelector("label"), file ? [h("strong", {}, file.name), h("span", { class: "muted small" }, bytes(file.size))] : "Choose a zip");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.bundle.files[0];
    if (!file) return toast("Choose a zip of your project first", "error");
    const data = new FormData();
    data.append("bundle", file, file.name);
    data.append("skillpack", pack);
    data.append("notes", form.notes.value);
    data.append("activate", form.activate.checked ? "true" : "false");
    data.append("wait", "false");
    $("#push-progress").hidden = false;
    replace("#push-status", badge("uploading", "building"), ` ${file.name}`);
    replace("#build-log");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      let deployment = await api("POST", "/v1/deployments", { form: data });
      await followBuild(deployment);
      deployment = await api("GET", `/v1/deployments/${deployment.id}`);
      replace("#push-status", badge(deployment.status), ` version ${deployment.version} of ${deployment.skillpack}`, deployment.active ? " is active" : "");
      if (deployment.status === "ready") toast(`Pushed version ${deployment.version}`, "ok");
      form.reset();
      loadVersions();
    } catch (error) {
      replace("#push-status", badge("failed"), ` ${error.message}`);
      const detail = Array.isArray(error.details) ? error.details : [];
      if (detail.length) $("#build-log").textContent = detail.map((d) => [d.file, d.field, d.message, d.build_log].filter(Boolean).join(": ")).join("\n");
    } finally {
      button.disabled = false;
    }
  });

  async function followBuild(deployment) {
    let d = deployment;
    while (d.status === "building") {
      replace("#push-status", badge("building"), ` version ${d.version}: installing requirements.txt`);
      await new Promise((resolve) => setTimeout(resolve, 600));
      d = await api("GET", `/v1/deployments/${d.id}`);
      const log = $("#build-log");
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = d.build_log || "";
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    if (d.build_log) $("#build-log").textContent = d.build_log;
    else $("#build-log").textContent = `No requirements.txt to build. ${d.skills.length} skill(s): ${d.skills.map((s) => s.name).join(", ")}`;
    return d;
  }

  loadVersions();
}

// ---------------------------------------------------------------------------------------------
// Jobs: the list with filters, updating live.

async function allSkills() {
  const { data } = await api("GET", "/v1/skillpacks");
  const lists = await Promise.all(data.map((p) => api("GET", "/v1/skills", { query: { skillpack: p.slug } }).catch(() => ({ data: [] }))));
  return lists.flatMap((l) => l.data.map((s) => `${s.skillpack}/${s.name}`));
}

async function jobsPage() {
  const form = $("#job-filters");
  const params = new URLSearchParams(location.search);
  const [skills, keyList] = await Promise.all([allSkills(), api("GET", "/v1/keys", { query: { limit: 200 } })]);
  const keyNames = Object.fromEntries(keyList.data.map((k) => [k.id, k.name || k.prefix]));
  form.skill.append(...skills.map((s) => h("option", { value: s }, s)));
  form.key.append(...keyList.data.map((k) => h("option", { value: k.id }, `${k.name || "unnamed"} (${k.prefix})`)));
  for (const name of ["status", "skill", "key", "since"]) if (params.get(name)) form[name].value = params.get(name);
  let cursor = null;
  let rows = [];

  function query() {
    const since = form.since.value ? new Date(Date.now() - Number(form.since.value) * 1000).toISOString() : "";
    return { status: form.status.value, skill: form.skill.value, key: form.key.value, created_after: since, limit: 25 };
  }

  function render() {
    replace("#job-list", table([
      { label: "Job", cell: (j) => h("a", { href: consoleLink(`/jobs/${j.id}`), class: "mono" }, shortId(j.id)) },
      { label: "Skill", cell: (j) => h("span", {}, `${j.skillpack}/${j.skill_name}`, h("span", { class: "sub" }, `v${j.version}${j.parent_job_id ? " · subagent" : ""}`)) },
      { label: "Status", cell: (j) => h("span", {}, badge(j.status), j.waiting_reason ? h("span", { class: "sub" }, j.waiting_reason) : null) },
      { label: "Key", class: "hide-narrow", cell: (j) => j.key_id ? keyNames[j.key_id] || shortId(j.key_id) : h("span", { class: "muted" }, j.parent_job_id ? "its parent" : "signed in") },
      { label: "Cost", class: "num", cell: (j) => usd(j.total_cost_micros) },
      { label: "Duration", class: "num hide-narrow", cell: (j) => duration(j.started_at, j.finished_at) },
      { label: "Created", cell: (j) => time(j.created_at) },
    ], rows, "No jobs match these filters."));
    $("#more-jobs").hidden = !cursor;
  }

  let loads = 0;
  async function load(more = false) {
    const ticket = ++loads;
    try {
      const page = await api("GET", "/v1/jobs", { query: { ...query(), cursor: more ? cursor : null } });
      if (ticket !== loads) return; // filters changed while this page was on its way
      rows = more ? rows.concat(page.data) : page.data;
      cursor = page.next_cursor;
      render();
    } catch (error) { report(error); }
  }

  form.addEventListener("change", () => {
    const url = new URL(location.href);
    for (const name of ["status", "skill", "key", "since"]) {
      if (form[name].value) url.searchParams.set(name, form[name].value); else url.searchParams.delete(name);
    }
    history.replaceState(null, "", url);
    load();
  });
  $("#more-jobs").addEventListener("click", () => load(true));
  setInterval(() => {
    if ($("#live").checked && document.visibilityState === "visible" && rows.length <= 25) load();
  }, 2500);
  load();
}

// ---------------------------------------------------------------------------------------------
// A job: its live timeline, result, outputs, cost, subagents, feedback, cancel and run again.

function eventSummary(event) {
  const p = event.payload || {};
  switch (event.type) {
    case "queued": return `${p.skillpack}/${p.skill} v${p.version}`;
    case "started": return `attempt ${p.attempt}${p.runner ? ` on ${p.runner}` : ""}`;
    case "log": return h("pre", {}, p.text);
    case "usage": return `${p.model || p.provider || ""}: ${usd(p.billed_micros || 0)}`;
    case "tool_call": return [h("strong", {}, p.name || p.tool || "tool"), h("pre", {}, json(p.input ?? p.arguments ?? p))];
    case "tool_result": return [h("strong", {}, p.name || p.tool || "result"), h("pre", {}, typeof p.output === "string" ? p.output : json(p.output ?? p))];
    case "step": return [
      h("span", {}, `step ${p.step ?? ""} · ${p.model || ""}${p.stop_reason ? ` · ${p.stop_reason}` : ""}`,
        p.input_tokens !== undefined ? h("span", { class: "muted small" }, ` · ${p.input_tokens} in / ${p.output_tokens} out`) : null),
      p.text ? h("pre", {}, p.text) : null];
    case "succeeded": return h("pre", {}, json(p.result ?? null));
    case "failed": return h("span", { class: "small" }, p.error || "");
    case "cancelled": return p.reason || "";
    case "input_requested": return [h("strong", {}, `question ${p.number ?? ""}`), h("p", {}, p.prompt || "")];
    case "input_provided": return h("pre", {}, json(p.answer ?? null));
    default: return h("pre", {}, json(p));
  }
}

function eventItem(event) {
  return h("li", { class: `ev-${event.type}`, dataset: { id: event.id } },
    h("span", { class: "ev-type" }, event.type),
    h("div", { class: "ev-body" }, eventSummary(event)),
    h("span", { class: "ev-time" }, new Date(event.created_at).toLocaleTimeString()));
}

// Follows a job's events over SSE (the session cookie travels with it); resolves with the end.
function follow(jobId, list, state, onEvent = () => {}) {
  return new Promise((resolve) => {
    const source = new EventSource(apiUrl(`/v1/jobs/${jobId}/stream`), { withCredentials: true });
    const seen = new Set();
    replace(state, badge("streaming"));
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (seen.has(event.id)) return;
      seen.add(event.id);
      const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
      list.append(eventItem(event));
      if (atBottom) list.scrollTop = list.scrollHeight;
      onEvent(event);
    };
    source.addEventListener("end", (message) => {
      source.close();
      replace(state, badge("ended"));
      resolve(JSON.parse(message.data));
    });
    source.onerror = () => { if (source.readyState === EventSource.CONNECTING) replace(state, badge("connecting")); };
  });
}

function renderOutputs(job, into) {
  if (!job.outputs.length) return replace(into, h("p", { class: "muted" }, "No files."));
  replace(into, job.outputs.map((o) => h("div", { class: "output-field" },
    h("h3", {}, o.drive_path),
    media(o.signed_url, o.drive_path),
    o.signed_url ? h("a", { href: o.signed_url, target: "_blank", rel: "noopener", class: "small" }, "Open signed link") : null)));
}

const IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp)$/i;
const VIDEO = /\.(mp4|webm|mov|m4v)$/i;
const AUDIO = /\.(mp3|wav|ogg|m4a|flac|aac)$/i;

function media(url, name, type = "") {
  if (!url) return h("p", { class: "muted small" }, "No link.");
  // The page's policy loads media from this gateway only (and local previews): no tracking
  // pixels from a job's result or a pasted URL.
  const parsed = new URL(url, location.origin);
  if (parsed.origin !== location.origin && parsed.protocol !== "blob:" && parsed.protocol !== "data:") return null;
  if (type.startsWith("image/") || IMAGE.test(name)) return h("div", { class: "output-media" }, h("img", { src: url, alt: name, loading: "lazy" }));
  if (type.startsWith("video/") || VIDEO.test(name)) return h("div", { class: "output-media" }, h("video", { src: url, controls: true, preload: "metadata" }));
  if (type.startsWith("audio/") || AUDIO.test(name)) return h("div", { class: "output-media" }, h("audio", { src: url, controls: true, preload: "metadata" }));
  return null;
}

async function subagentTree(jobId, depth = 0) {
  const { data } = await api("GET", "/v1/jobs", { query: { parent: jobId, limit: 50 } });
  if (!data.length) return null;
  return h("ul", { class: "tree" }, await Promise.all(data.map(async (child) => h("li", {},
    h("a", { href: consoleLink(`/jobs/${child.id}`), class: "mono" }, shortId(child.id)), " ",
    `${child.skill_name} `, badge(child.status), h("span", { class: "muted small" }, ` ${usd(child.total_cost_micros)}`),
    depth < 3 ? await subagentTree(child.id, depth + 1) : null))));
}

async function jobPage() {
  const id = ctx.job;
  let job;
  try {
    job = await api("GET", `/v1/jobs/${id}`);
  } catch (error) {
    return replace("#job-summary", h("p", { class: "form-error" }, error.message));
  }

  // Why a queued job waits, in words (docs/queue.md), with its place in the workspace's queue.
  function waitingText(j) {
    const words = {
      queue: "waiting its turn",
      concurrency_limit: "waiting: the workspace runs its limit of jobs at once",
      no_runner: "waiting for a runner",
      no_credit: "waiting for credit",
      spend_cap: "the key's daily cap is spent",
    };
    const place = j.queue_position ? ` (#${j.queue_position} in queue)` : "";
    return `${words[j.waiting_reason] || j.waiting_reason}${place}`;
  }

  function summary() {
    replace("#job-summary", h("dl", { class: "facts" },
      h("div", {}, h("dt", {}, "Status"), h("dd", {}, badge(job.status), job.waiting_reason ? h("span", { class: "small muted" }, ` ${waitingText(job)}`) : null)),
      h("div", {}, h("dt", {}, "Skill"), h("dd", {}, `${job.skillpack}/${job.skill_name}`)),
      h("div", {}, h("dt", {}, "Version"), h("dd", {}, `v${job.version}, attempt ${job.attempt}`)),
      h("div", {}, h("dt", {}, "Created"), h("dd", {}, time(job.created_at))),
      h("div", {}, h("dt", {}, "Duration"), h("dd", {}, duration(job.started_at, job.finished_at))),
      h("div", {}, h("dt", {}, "Cost"), h("dd", {}, usd(job.total_cost_micros))),
      job.parent_job_id ? h("div", {}, h("dt", {}, "Parent"), h("dd", {}, h("a", { href: consoleLink(`/jobs/${job.parent_job_id}`), class: "mono" }, shortId(job.parent_job_id)))) : null));
    $("#cancel-job").hidden = ["succeeded", "failed", "cancelled"].includes(job.status);
    question();
    if (job.status === "succeeded") replace("#result", h("pre", { class: "code" }, json(job.result)));
    else if (job.error) replace("#result", h("p", { class: "form-error" }, job.error), job.error_detail ? h("pre", { class: "code" }, json(job.error_detail)) : null);
    renderOutputs(job, $("#outputs"));
  }

  // A waiting job's question, and the form that answers it (a string schema takes the text as
  // it is; any other answer is written as JSON).
  function question() {
    const asked = job.status === "waiting" ? job.input_request : null;
    $("#input-request").hidden = !asked;
    if (!asked) return;
    replace("#input-prompt", asked.prompt);
    replace("#input-schema", json(asked.answer_schema));
    replace("#input-label", asked.answer_schema.type === "string" ? "Answer" : "Answer (JSON)");
    replace("#input-expires", asked.expires_at ? `The job fails if no answer comes by ${time(asked.expires_at)}.` : "");
  }

  async function details() {
    const [usage, tree] = await Promise.all([api("GET", `/v1/jobs/${id}/usage`, { query: { limit: 200 } }), subagentTree(id)]);
    replace("#cost", h("p", {}, h("strong", {}, usd(usage.cost_micros)), " this job", usage.total_cost_micros !== usage.cost_micros ? [" · ", h("strong", {}, usd(usage.total_cost_micros)), " with its subagents"] : null),
      table([
        { label: "Model", cell: (u) => h("code", {}, u.model) },
        { label: "Units", class: "num", cell: (u) => u.input_tokens || u.output_tokens ? `${u.input_tokens} in / ${u.output_tokens} out` : `${u.units} ${u.unit}` },
        { label: "Billed", class: "num", cell: (u) => usd(u.billed_micros) },
      ], usage.data, "No billed calls."));
    replace("#subagents", tree || h("p", { class: "muted" }, "None."));
  }

  async function feedback() {
    const { data } = await api("GET", `/v1/jobs/${id}/feedback`);
    replace("#feedback-list", data.map((f) => h("p", { class: "small entry" }, f.rating > 0 ? icon("up") : f.rating < 0 ? icon("down") : null, h("strong", {}, f.end_user_id || "anonymous"), f.comment ? `: ${f.comment}` : "", h("span", { class: "muted" }, time(f.updated_at)))));
  }

  summary();
  details().catch(report);
  feedback().catch(report);
  let rating = 0;
  $$(".thumb").forEach((button) => button.prepend(icon(button.dataset.rating === "1" ? "up" : "down")));
  $$(".thumb").forEach((button) => button.addEventListener("click", () => {
    rating = Number(button.dataset.rating) === rating ? 0 : Number(button.dataset.rating);
    $$(".thumb").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.rating) === rating)));
  }));
  $("#feedback-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", `/v1/jobs/${id}/feedback`, { json: { rating, comment: event.target.comment.value, end_user_id: `console:${$(".who-email")?.textContent || ""}` } });
      event.target.comment.value = "";
      toast("Feedback saved", "ok");
      feedback();
    } catch (error) { report(error); }
  });
  $("#input-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const asked = job.input_request;
    const error = $("#input-error");
    error.hidden = true;
    if (!asked) return;
    const text = event.target.answer.value;
    let answer = text;
    if (asked.answer_schema.type !== "string") {
      try { answer = JSON.parse(text); } catch (problem) {
        replace(error, `The answer is not JSON: ${problem.message}`);
        error.hidden = false;
        return;
      }
    }
    try {
      job = await api("POST", `/v1/jobs/${id}/input`, { json: { answer, request_id: asked.request_id } });
      event.target.answer.value = "";
      toast("Answer sent: the job runs on", "ok");
      summary();
    } catch (problem) {
      const details = Array.isArray(problem.details) ? problem.details.map((d) => `${d.pointer}: ${d.message}`) : [];
      replace(error, problem.message, details.length ? h("ul", {}, details.map((d) => h("li", {}, d))) : null);
      error.hidden = false;
    }
  });
  $("#cancel-job").addEventListener("click", async () => {
    try {
      job = await api("POST", `/v1/jobs/${id}/cancel`);
      toast(job.status === "cancelled" ? "Cancelled" : "Cancelling…", "ok");
      summary();
    } catch (error) { report(error); }
  });
  const again = $("#run-again");
  api("GET", `/v1/jobs/${id}/inputs`).then((submitted) => {
    if (submitted.inputs === null) return;
    again.disabled = false;
    again.addEventListener("click", async () => {
      try {
        const next = await api("POST", "/v1/jobs", { json: { skill: submitted.skill, inputs: submitted.inputs } });
        location.assign(consoleLink(`/jobs/${next.id}`));
      } catch (error) { report(error); }
    });
  }).catch(() => {});
  await follow(id, $("#timeline"), $("#stream-state"), async (event) => {
    if (event.type !== "input_requested" && event.type !== "input_provided") return;
    job = await api("GET", `/v1/jobs/${id}`).catch(() => job);
    summary();
  });
  job = await api("GET", `/v1/jobs/${id}`);
  summary();
  details().catch(report);
}

// ---------------------------------------------------------------------------------------------
// Playground: a form from input_schema (contentMediaType and x-puras widgets), Run with the
// events streaming beside it, the output rendered by output_schema, and code to call it.

const FILE_WIDGETS = new Set(["image", "video", "audio", "file"]);

function widgetOf(schema) {
  const hint = schema["x-puras"] || {};
  if (hint.widget) return hint.widget;
  const media = schema.contentMediaType || "";
  if (media.startsWith("image/")) return "image";
  if (media.startsWith("video/")) return "video";
  if (media.startsWith("audio/")) return "audio";
  if (media) return "file";
  if (schema.type === "array" && schema.items && (schema.items.properties?.drive_path || schema.items["x-puras"]?.widget)) return "attachments";
  if (schema.type === "object" && schema.properties?.drive_path) return "file";
  if (schema.enum) return "select";
  if (schema.type === "boolean") return "checkbox";
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (schema.type === "string") return schema.format === "textarea" || (schema.maxLength || 0) > 200 ? "long_text" : "text";
  return "json";
}

function acceptOf(schema, widget) {
  const hint = schema["x-puras"] || {};
  if (Array.isArray(hint.accept)) return hint.accept.join(",");
  if (schema.contentMediaType) return schema.contentMediaType;
  return { image: "image/*", video: "video/*", audio: "audio/*" }[widget] || "";
}

// A file field: a drop zone that uploads to the drive, or a URL; its value is what the schema
// takes: a drive path string for `type: string`, else {drive_path} / {url}.
function fileField(name, schema, widget, onChange) {
  const hint = schema["x-puras"] || {};
  const asString = schema.type === "string";
  let value;
  const preview = h("div", { class: "preview" });
  const input = h("input", { type: "file", id: `f-${name}`, accept: acceptOf(schema, widget) || null, "aria-label": `${name}: choose a file` });
  const zone = h("div", { class: "dropzone" }, input,
    h("label", { for: `f-${name}` }, h("strong", {}, hint.placeholder || `Drop ${widget === "file" ? "a file" : `an ${widget === "image" ? "image" : widget}`} here`), h("span", { class: "muted small" }, "or click to choose; it is uploaded to the drive")), preview);
  const url = h("input", { type: "url", placeholder: "https://…", "aria-label": `${name}: or a URL` });
  const pick = h("button", { type: "button", class: "ghost small" }, "Pick from drive");
  for (const event of ["dragenter", "dragover"]) zone.addEventListener(event, () => zone.classList.add("over"));
  for (const event of ["dragleave", "drop"]) zone.addEventListener(event, () => zone.classList.remove("over"));
  const maxBytes = hint.max_size_mb ? hint.max_size_mb * 1024 * 1024 : null;

  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    if (maxBytes && file.size > maxBytes) {
      toast(`${file.name} is ${bytes(file.size)}; this input takes at most ${hint.max_size_mb} MB`, "error");
      return;
    }
    replace(preview, h("span", { class: "file-chip" }, `uploading ${file.name}…`));
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      const up = await api("POST", "/v1/drive/upload", { form });
      value = asString ? up.drive_path : { drive_path: up.drive_path };
      url.value = "";
      replace(preview, media(URL.createObjectURL(file), file.name, file.type), h("span", { class: "file-chip", "data-drive-path": up.drive_path }, up.drive_path));
      onChange();
    } catch (error) {
      replace(preview);
      report(error);
    }
  });
  url.addEventListener("input", () => {
    value = url.value ? (asString ? url.value : { url: url.value }) : undefined;
    replace(preview, url.value ? media(url.value, url.value) : null);
    onChange();
  });
  pick.addEventListener("click", async () => {
    const path = await drivePicker();
    if (!path) return;
    value = asString ? path : { drive_path: path };
    const signed = await api("GET", "/v1/drive/sign", { query: { path } }).catch(() => null);
    replace(preview, signed ? media(signed.signed_url, path) : null, h("span", { class: "file-chip" }, path));
    onChange();
  });
  return { el: h("div", {}, zone, h("div", { class: "or" }, "or"), h("div", { class: "row" }, h("label", { class: "grow" }, "URL", url), pick)), value: () => value };
}

function attachmentsField(name, schema, onChange) {
  const values = [];
  const list = h("div", { class: "preview" });
  const input = h("input", { type: "file", id: `f-${name}`, multiple: true, accept: acceptOf(schema.items || {}, "file") || null, "aria-label": `${name}: choose files` });
  input.addEventListener("change", async () => {
    for (const file of input.files) {
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const up = await api("POST", "/v1/drive/upload", { form });
        values.push({ drive_path: up.drive_path });
        list.append(h("span", { class: "file-chip" }, up.drive_path), " ");
        onChange();
      } catch (error) { report(error); }
    }
  });
  return { el: h("div", { class: "dropzone" }, input, h("label", { for: `f-${name}` }, h("strong", {}, "Drop files here"), h("span", { class: "muted small" }, "each is uploaded to the drive")), list), value: () => (values.length ? values : undefined) };
}

async function drivePicker() {
  const dialog = $("#drive-picker");
  let chosen = null;
  async function show(prefix) {
    const listing = await api("GET", "/v1/drive/list", { query: { prefix } });
    const parts = prefix.split("/").filter(Boolean);
    replace("#picker-crumbs", h("a", { href: "#", onclick: (e) => { e.preventDefault(); show(""); } }, "drive"),
      parts.map((part, i) => [" / ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); show(parts.slice(0, i + 1).join("/") + "/"); } }, part)]));
    replace("#picker-list",
      listing.folders.map((folder) => h("li", {}, h("button", { type: "button", onclick: () => show(`${prefix}${folder.replace(/\/?$/, "/").split("/").filter(Boolean).pop()}/`) }, icon("folder"), folder))),
      listing.files.map((file) => h("li", {}, h("button", { type: "button", onclick: () => { chosen = file.path; dialog.close("picked"); } }, icon("file"), file.name, h("span", { class: "muted small" }, ` ${bytes(file.bytes)}`)))),
      !listing.folders.length && !listing.files.length ? h("li", { class: "empty" }, "Empty folder.") : null);
  }
  await show("");
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  return chosen;
}

function buildField(name, schema, required, onChange) {
  const hint = schema["x-puras"] || {};
  const widget = widgetOf(schema);
  const id = `f-${name}`;
  const label = h("label", { for: id }, h("span", {}, schema.title || name, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null));
  let control;
  let read;
  if (FILE_WIDGETS.has(widget)) {
    const field = fileField(name, schema, widget, onChange);
    control = field.el;
    read = field.value;
  } else if (widget === "attachments") {
    const field = attachmentsField(name, schema, onChange);
    control = field.el;
    read = field.value;
  } else if (widget === "drive_file") {
    const input = h("input", { id, type: "text", placeholder: hint.placeholder || "uploads/…", required: required || null });
    const pick = h("button", { type: "button", class: "ghost small", onclick: async () => { const path = await drivePicker(); if (path) { input.value = path; onChange(); } } }, "Browse");
    input.addEventListener("input", onChange);
    control = h("div", { class: "row" }, h("div", { class: "grow" }, input), pick);
    read = () => input.value || undefined;
  } else if (widget === "select") {
    const select = h("select", { id, required: required || null },
      required ? null : h("option", { value: "" }, "—"),
      schema.enum.map((option) => h("option", { value: JSON.stringify(option), selected: schema.default === option }, String(option))));
    select.addEventListener("change", onChange);
    control = select;
    read = () => (select.value ? JSON.parse(select.value) : undefined);
  } else if (widget === "checkbox") {
    const box = h("input", { id, type: "checkbox", checked: schema.default === true });
    box.addEventListener("change", onChange);
    control = h("label", { class: "check" }, box, hint.placeholder || "yes");
    read = () => box.checked;
  } else if (widget === "number") {
    const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum : null);
    const max = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum : null);
    const input = h("input", { id, type: "number", min, max, step: schema.type === "integer" ? 1 : schema.multipleOf || "any", value: schema.default ?? null, placeholder: hint.placeholder || (min !== null && max !== null ? `${min} – ${max}` : null), required: required || null });
    input.addEventListener("input", onChange);
    control = input;
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (widget === "long_text" || widget === "text") {
    const long = widget === "long_text";
    const input = long
      ? h("textarea", { id, rows: 5, maxlength: schema.maxLength ?? null, placeholder: hint.placeholder || null, required: required || null }, schema.default ?? "")
      : h("input", { id, type: "text", maxlength: schema.maxLength ?? null, value: schema.default ?? null, placeholder: hint.placeholder || null, required: required || null });
    input.addEventListener("input", onChange);
    control = input;
    read = () => (input.value === "" ? undefined : input.value);
  } else {
    const area = h("textarea", { id, rows: 4, class: "mono", placeholder: "JSON" }, schema.default !== undefined ? json(schema.default) : "");
    area.addEventListener("input", onChange);
    control = area;
    read = () => {
      if (!area.value.trim()) return undefined;
      try { return JSON.parse(area.value); } catch { throw new Error(`${name}: not valid JSON`); }
    };
  }
  const help = hint.help || schema.description;
  const error = h("p", { class: "form-error small", hidden: true });
  return { name, el: h("div", { class: "field", dataset: { field: name } }, label, control, help ? h("p", { class: "help" }, help) : null, error), read, error };
}

function renderOutput(job, schema, into) {
  if (job.status !== "succeeded") {
    return replace(into, h("p", { class: "form-error" }, job.error || job.status), job.error_detail ? h("pre", { class: "code" }, json(job.error_detail)) : null);
  }
  const links = Object.fromEntries(job.outputs.map((o) => [o.drive_path, o.signed_url]));
  const result = job.result;
  const props = schema?.properties;
  if (!props || typeof result !== "object" || result === null) return replace(into, h("pre", { class: "code" }, json(result)));
  replace(into, Object.entries(result).map(([key, value]) => {
    const field = props[key] || {};
    const path = typeof value === "object" && value !== null ? value.drive_path : null;
    let shown;
    if (path) shown = [media(links[path], path) || h("p", {}, h("code", {}, path)), links[path] ? h("a", { href: links[path], target: "_blank", rel: "noopener", class: "small" }, "Open signed link") : null];
    else if (typeof value === "string") shown = (/^(https:\/\/|\/v1\/drive\/files\/)/.test(value) && media(value, value, field.contentMediaType || "")) || h("pre", { class: "output-text" }, value);
    else shown = h("pre", { class: "code" }, json(value));
    return h("div", { class: "output-field" }, h("h3", {}, field.title || key), shown);
  }));
}

function snippets(skill, inputs) {
  const api = ctx.api;
  const bodyText = JSON.stringify({ skill, inputs }, null, 2);
  return {
    curl: `curl -X POST "${api}/v1/jobs?wait=true" \\\n  -H "Authorization: Bearer $PURAS_API_KEY" \\\n  -d '${JSON.stringify({ skill, inputs }).replace(/'/g, "'\\''")}'`,
    python: `import os\n\nimport puras\n\nclient = puras.Client(api_key=os.environ["PURAS_API_KEY"], api_base="${api}")\nresult = client.run(${JSON.stringify(skill)}, ${JSON.stringify(inputs, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None")})\nprint(result)`,
    js: `const response = await fetch("${api}/v1/jobs?wait=true", {\n  method: "POST",\n  headers: {\n    Authorization: \`Bearer \${process.env.PURAS_API_KEY}\`,\n    "Content-Type": "application/json",\n  },\n  body: JSON.stringify(${bodyText.replace(/\n/g, "\n  ")}),\n});\nconst job = await response.json();\nconsole.log(job.status, job.result);`,
  };
}

async function playgroundPage() {
  const packSelect = $("#skillpack");
  const skillSelect = $("#skill");
  const params = new URLSearchParams(location.search);
  let pack = await skillpackSelect(packSelect, (value) => { pack = value; loadSkills(); });
  let skills = [];
  let current = null;
  let fields = [];
  let lang = "curl";

  async function loadSkills() {
    ({ data: skills } = await api("GET", "/v1/skills", { query: { skillpack: pack } }).catch(() => ({ data: [] })));
    const wanted = params.get("skill");
    replace(skillSelect, skills.map((s) => h("option", { value: s.name, selected: s.name === wanted }, s.name)));
    if (!skills.length) {
      replace("#fields", h("p", { class: "muted" }, "No active skills in this skillpack: push a project first."));
      $("#run").disabled = true;
      return;
    }
    $("#run").disabled = false;
    pickSkill(skillSelect.value);
  }

  function inputs(strict) {
    const out = {};
    for (const field of fields) {
      let value;
      try { value = field.read(); } catch (error) { if (strict) throw error; }
      if (value !== undefined) out[field.name] = value;
    }
    return out;
  }

  function updateSnippet() {
    if (!current) return;
    const code = snippets(`${pack}/${current.name}`, inputs(false))[lang];
    $("#snippet").textContent = code;
  }

  function pickSkill(name) {
    current = skills.find((s) => s.name === name);
    replace("#skill-description", current.description || "", " ", badge(current.kind, "idle"), current.model ? [" ", h("code", {}, current.model)] : null);
    const schema = current.input_schema || { type: "object", properties: {} };
    const required = schema.required || [];
    // Stored schemas may not keep their properties' order: x-puras.order first, then the
    // required fields in their listed order, then the rest.
    const rank = ([name, prop]) => [prop["x-puras"]?.order ?? 1e9, required.includes(name) ? required.indexOf(name) : 1e9];
    const ordered = Object.entries(schema.properties || {}).sort((a, b) => {
      const [x, y] = [rank(a), rank(b)];
      return x[0] - y[0] || x[1] - y[1];
    });
    fields = ordered.map(([name, prop]) => buildField(name, prop, required.includes(name), updateSnippet));
    replace("#fields", fields.length ? fields.map((f) => f.el) : h("p", { class: "muted" }, "This skill takes no inputs."));
    updateSnippet();
  }

  skillSelect.addEventListener("change", () => pickSkill(skillSelect.value));
  $$(".tabs button").forEach((tab) => tab.addEventListener("click", () => {
    lang = tab.dataset.lang;
    $$(".tabs button").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
    updateSnippet();
  }));
  $("#copy-snippet").addEventListener("click", (event) => copy($("#snippet").textContent, event.target));
  const form = $("#play-form");
  form.addEventListener("keydown", (event) => { if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError($("#play-error"));
    fields.forEach((f) => clearError(f.error));
    let values;
    try { values = inputs(true); } catch (error) { return showError($("#play-error"), error); }
    const run = $("#run");
    run.disabled = true;
    replace("#run-events");
    replace("#run-output", h("p", { class: "muted" }, "Running…"));
    replace("#run-state", badge("queued"));
    try {
      const job = await api("POST", "/v1/jobs", { json: { skill: `${pack}/${current.name}`, inputs: values } });
      const link = $("#run-link");
      link.hidden = false;
      link.href = consoleLink(`/jobs/${job.id}`);
      const end = await follow(job.id, $("#run-events"), $("#run-state"));
      replace("#run-state", badge(end.status));
      renderOutput(end.job, current.output_schema, $("#run-output"));
    } catch (error) {
      replace("#run-state", badge("failed"));
      replace("#run-output");
      showError($("#play-error"), error);
      for (const detail of Array.isArray(error.details) ? error.details : []) {
        const name = (detail.pointer || "").split("/")[2];
        const field = fields.find((f) => f.name === name);
        if (field) showError(field.error, { message: detail.message });
      }
    } finally {
      run.disabled = false;
    }
  });
  loadSkills();
}

// ---------------------------------------------------------------------------------------------
// Usage: every billed call, and the CSV export.

async function usagePage() {
  const period = $("#period");
  let cursor = null;
  let rows = [];
  const since = () => new Date(Date.now() - Number(period.value) * 86400000).toISOString();

  function render() {
    replace("#usage-rows", table([
      { label: "When", cell: (u) => time(u.created_at) },
      { label: "Model", cell: (u) => h("span", {}, h("code", {}, u.model), h("span", { class: "sub" }, `${u.kind} · ${u.provider}${u.variant ? ` · ${u.variant}` : ""}`)) },
      { label: "Units", class: "num", cell: (u) => u.input_tokens || u.output_tokens ? `${u.input_tokens.toLocaleString()} in / ${u.output_tokens.toLocaleString()} out` : `${u.units} ${u.unit}` },
      { label: "Job", class: "hide-narrow", cell: (u) => u.job_id ? h("a", { href: consoleLink(`/jobs/${u.job_id}`), class: "mono" }, shortId(u.job_id)) : "—" },
      { label: "Micros", class: "num", cell: (u) => u.billed_micros.toLocaleString() },
      { label: "Billed", class: "num", cell: (u) => usd(u.billed_micros) },
    ], rows, "No billed calls in this period."));
    $("#more-usage").hidden = !cursor;
  }

  async function load(more = false) {
    try {
      const [page, summary] = await Promise.all([
        api("GET", "/v1/usage", { query: { since: since(), limit: 50, cursor: more ? cursor : null } }),
        more ? null : api("GET", "/v1/usage/summary", { query: { days: period.value } }),
      ]);
      rows = more ? rows.concat(page.data) : page.data;
      cursor = page.next_cursor;
      if (summary) {
        replace("#usage-total", usd(summary.total_micros));
        replace("#usage-calls", summary.by_day.reduce((n, d) => n + d.calls, 0).toLocaleString());
      }
      $("#export").href = apiUrl("/v1/usage/export", { since: since() }).toString();
      render();
    } catch (error) { report(error); }
  }

  period.addEventListener("change", () => load());
  $("#more-usage").addEventListener("click", () => load(true));
  load();
}

// ---------------------------------------------------------------------------------------------
// API keys: create (shown once), list with last use and spend today, revoke.

async function keysPage() {
  async function load() {
    const { data } = await api("GET", "/v1/keys", { query: { limit: 200 } });
    replace("#key-list", table([
      { label: "Name", cell: (k) => h("span", {}, h("strong", {}, k.name || "unnamed"), h("span", { class: "sub mono" }, `${k.prefix}…`)) },
      { label: "Kind", cell: (k) => badge(k.kind) },
      { label: "Allowed skills", class: "hide-narrow", cell: (k) => k.allowed_skills ? k.allowed_skills.join(", ") : h("span", { class: "muted" }, "any") },
      { label: "Daily cap", class: "num", cell: (k) => k.daily_cap_micros ? usd(k.daily_cap_micros) : h("span", { class: "muted" }, "none") },
      { label: "Spent today", class: "num", cell: (k) => usd(k.spent_today_micros) },
      { label: "Last used", cell: (k) => time(k.last_used_at) },
      { label: "Status", cell: (k) => k.revoked_at ? badge("revoked") : badge("live") },
      { label: "", class: "actions", cell: (k) => !k.revoked_at && isOwner() ? h("button", { type: "button", class: "small danger", onclick: () => revoke(k) }, "Revoke") : null },
    ], data, "No keys."));
  }

  async function revoke(k) {
    if (!confirm(`Revoke the key "${k.name || k.prefix}"? Requests with it are refused from now on.`)) return;
    try {
      await api("DELETE", `/v1/keys/${k.id}`);
      toast("Key revoked", "ok");
      load();
    } catch (error) { report(error); }
  }

  const dialog = $("#key-dialog");
  const form = $("#key-form");
  $("#new-key").addEventListener("click", () => { form.reset(); clearError($("#key-error")); dialog.showModal(); });
  form.addEventListener("submit", async (event) => {
    if (event.submitter?.value !== "create") return;
    event.preventDefault();
    clearError($("#key-error"));
    const payload = { kind: form.kind.value, name: form.name.value };
    const allowed = form.allowed_skills.value.split(/[\s,]+/).filter(Boolean);
    if (allowed.length) payload.allowed_skills = allowed;
    if (form.daily_cap.value) {
      const micros = usdToMicros(form.daily_cap.value);
      if (!micros) return showError($("#key-error"), { message: "Daily cap: a positive amount in USD, e.g. 5 or 0.25" });
      payload.daily_cap_micros = micros;
    }
    try {
      const created = await api("POST", "/v1/keys", { json: payload });
      dialog.close();
      $("#key-value").textContent = created.api_key;
      $("#key-shown").showModal();
      load();
    } catch (error) { showError($("#key-error"), error); }
  });
  $("#copy-key").addEventListener("click", (event) => copy($("#key-value").textContent, event.target));
  $("#key-shown").addEventListener("close", () => { $("#key-value").textContent = ""; });
  load();
}

// ---------------------------------------------------------------------------------------------
// Secrets: names only; set and delete.

async function secretsPage() {
  const select = $("#skillpack");
  let pack = await skillpackSelect(select, (value) => { pack = value; load(); });

  async function load() {
    const { data } = await api("GET", "/v1/secrets", { query: { skillpack: pack } });
    replace("#secret-list", table([
      { label: "Name", cell: (s) => h("code", {}, s.name) },
      { label: "Value", cell: () => h("span", { class: "muted" }, "•••••••• hidden") },
      { label: "Updated", cell: (s) => time(s.updated_at) },
      { label: "", class: "actions", cell: (s) => isOwner() ? h("button", { type: "button", class: "small danger", onclick: () => remove(s.name) }, "Delete") : null },
    ], data, `No secrets in ${pack}.`));
  }

  async function remove(name) {
    if (!confirm(`Delete the secret ${name}? Jobs of ${pack} will no longer see it.`)) return;
    try {
      await api("DELETE", `/v1/secrets/${encodeURIComponent(name)}`, { query: { skillpack: pack } });
      toast(`${name} deleted`, "ok");
      load();
    } catch (error) { report(error); }
  }

  $("#secret-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const saved = await api("PUT", `/v1/secrets/${encodeURIComponent(form.name.value)}`, { query: { skillpack: pack }, json: { value: form.value.value } });
      toast(`${saved.name} ${saved.created ? "created" : "updated"}`, "ok");
      form.reset();
      load();
    } catch (error) { report(error); }
  });
  load();
}

// ---------------------------------------------------------------------------------------------
// Drive: folders, upload, preview, signed links, zip, delete, and each file's origin.

async function drivePage() {
  let prefix = new URLSearchParams(location.search).get("prefix") || "";

  function go(next) {
    prefix = next;
    const url = new URL(location.href);
    if (prefix) url.searchParams.set("prefix", prefix); else url.searchParams.delete("prefix");
    history.pushState(null, "", url);
    load();
  }

  async function origin(file, cell) {
    try {
      const found = await api("GET", "/v1/drive/origin", { query: { path: file.path } });
      replace(cell, found.job_id
        ? h("span", {}, h("a", { href: consoleLink(`/jobs/${found.job_id}`), class: "mono" }, shortId(found.job_id)), h("span", { class: "sub" }, `${found.skill_name || ""}${found.tool ? ` · ${found.tool}` : ""}`))
        : h("span", { class: "muted" }, "uploaded"));
    } catch { replace(cell, "—"); }
  }

  let loads = 0;
  async function load() {
    const here = prefix;
    const ticket = ++loads;
    const parts = here.split("/").filter(Boolean);
    replace("#crumbs", h("a", { href: "#", onclick: (e) => { e.preventDefault(); go(""); } }, "drive"),
      parts.map((part, i) => [h("span", { class: "sep" }, "/"), h("a", { href: "#", onclick: (e) => { e.preventDefault(); go(parts.slice(0, i + 1).join("/") + "/"); } }, part)]));
    $("#zip-folder").href = apiUrl("/v1/drive/zip", { prefix: here }).toString();
    let listing;
    try { listing = await api("GET", "/v1/drive/list", { query: { prefix: here } }); } catch (error) { return report(error); }
    if (ticket !== loads) return; // a later listing was asked for: this one is stale
    const entries = [
      ...listing.folders.map((f) => ({ folder: true, name: f.replace(/\/$/, "").split("/").pop(), path: `${here}${f.replace(/\/$/, "").split("/").pop()}/` })),
      ...listing.files.map((f) => ({ ...f, folder: false })),
    ];
    const origins = [];
    replace("#drive-list", table([
      { label: "Name", cell: (e) => e.folder ? h("a", { href: "#", class: "entry", onclick: (ev) => { ev.preventDefault(); go(e.path); } }, icon("folder"), e.name) : h("button", { type: "button", class: "linkish entry", onclick: () => preview(e) }, icon("file"), e.name) },
      { label: "Size", class: "num", cell: (e) => e.folder ? "" : bytes(e.bytes) },
      { label: "Type", class: "hide-narrow", cell: (e) => e.folder ? "folder" : e.content_type },
      { label: "Origin", cell: (e) => { if (e.folder) return ""; const cell = h("span", { class: "muted" }, "…"); origins.push([e, cell]); return cell; } },
      { label: "Updated", class: "hide-narrow", cell: (e) => e.folder ? "" : time(e.updated_at) },
      { label: "", class: "actions", cell: (e) => h("span", {},
        e.folder ? h("a", { class: "button small", href: apiUrl("/v1/drive/zip", { prefix: e.path }).toString(), download: true }, "Zip") : h("button", { type: "button", class: "small", onclick: () => preview(e) }, "Preview"),
        " ", h("button", { type: "button", class: "small danger", onclick: () => remove(e) }, "Delete")) },
    ], entries, here ? "This folder is empty." : "The drive is empty: upload a file."));
    origins.slice(0, 100).forEach(([file, cell]) => origin(file, cell));
  }

  let previewing = null;
  async function preview(file) {
    previewing = file;
    const dialog = $("#preview");
    replace("#preview-title", file.name);
    $("#preview-link").hidden = true;
    replace("#preview-body", h("p", { class: "muted" }, "Loading…"));
    dialog.showModal();
    try {
      const signed = await api("GET", "/v1/drive/sign", { query: { path: file.path, ttl: 600 } });
      const type = file.content_type || "";
      const shown = media(signed.signed_url, file.name, type)
        || (type === "application/pdf" || type.startsWith("text/") ? h("iframe", { src: signed.signed_url, title: file.name, sandbox: "" }) : null)
        || h("p", {}, h("a", { href: signed.signed_url, target: "_blank", rel: "noopener" }, "Download"), h("span", { class: "muted" }, ` (${type || "unknown type"}, ${bytes(file.bytes)})`));
      replace("#preview-body", shown);
    } catch (error) { replace("#preview-body", h("p", { class: "form-error" }, error.message)); }
  }

  $("#sign-link").addEventListener("click", async () => {
    try {
      const signed = await api("GET", "/v1/drive/sign", { query: { path: previewing.path, ttl: $("#ttl").value } });
      $("#link-value").textContent = signed.signed_url;
      $("#preview-link").hidden = false;
    } catch (error) { report(error); }
  });
  $("#copy-link").addEventListener("click", (event) => copy($("#link-value").textContent, event.target));

  async function remove(entry) {
    const what = entry.folder ? `the folder ${entry.path} and every file in it` : entry.path;
    if (!confirm(`Delete ${what}?`)) return;
    try {
      const done = await api("DELETE", "/v1/drive/object", { query: { path: entry.path } });
      toast(`Deleted ${done.deleted} file${done.deleted === 1 ? "" : "s"}`, "ok");
      load();
    } catch (error) { report(error); }
  }

  $("#upload").addEventListener("change", async (event) => {
    for (const file of event.target.files) {
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("path", prefix ? `${prefix}${file.name}` : `uploads/${file.name}`);
      try {
        const up = await api("POST", "/v1/drive/upload", { form });
        toast(`Uploaded ${up.drive_path}`, "ok");
      } catch (error) { report(error); }
    }
    event.target.value = "";
    load();
  });
  window.addEventListener("popstate", () => { prefix = new URLSearchParams(location.search).get("prefix") || ""; load(); });
  load();
}

// ---------------------------------------------------------------------------------------------
// Members: invite, change roles, remove.

async function membersPage() {
  async function load() {
    const { data } = await api("GET", "/v1/members");
    const me = $(".who-email")?.textContent;
    replace("#member-list", table([
      { label: "Member", cell: (m) => h("span", {}, h("strong", {}, m.email), m.email === me ? h("span", { class: "sub" }, "you") : null) },
      { label: "Role", cell: (m) => isOwner()
        ? h("select", { "aria-label": `Role of ${m.email}`, onchange: (e) => setRole(m, e.target.value) }, ["owner", "member"].map((r) => h("option", { value: r, selected: r === m.role }, r)))
        : badge(m.role) },
      { label: "Joined", class: "hide-narrow", cell: (m) => time(m.joined_at) },
      { label: "Last sign-in", cell: (m) => time(m.last_sign_in_at) },
      { label: "", class: "actions", cell: (m) => isOwner() ? h("button", { type: "button", class: "small danger", onclick: () => remove(m) }, m.email === me ? "Leave" : "Remove") : null },
    ], data));
    if (isOwner()) {
      const invitations = await api("GET", "/v1/members/invitations");
      replace("#invitation-list", table([
        { label: "Email", cell: (i) => i.email },
        { label: "Role", cell: (i) => badge(i.role) },
        { label: "Expires", cell: (i) => new Date(i.expires_at).toLocaleDateString() },
        { label: "", class: "actions", cell: (i) => h("button", { type: "button", class: "small", onclick: () => withdraw(i) }, "Withdraw") },
      ], invitations.data, "No open invitations."));
    }
  }

  async function setRole(member, role) {
    try {
      await api("PATCH", `/v1/members/${member.user_id}`, { json: { role } });
      toast(`${member.email} is now ${role}`, "ok");
    } catch (error) { report(error); }
    load();
  }

  async function remove(member) {
    if (!confirm(`Remove ${member.email} from this workspace?`)) return;
    try {
      await api("DELETE", `/v1/members/${member.user_id}`);
      toast(`${member.email} removed`, "ok");
      load();
    } catch (error) { report(error); }
  }

  async function withdraw(invitation) {
    try {
      await api("DELETE", `/v1/members/invitations/${invitation.id}`);
      load();
    } catch (error) { report(error); }
  }

  $("#invite-member").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const invitation = await api("POST", "/v1/members/invitations", { json: { email: form.email.value, role: form.role.value } });
      $("#invite-url").textContent = invitation.url;
      $("#invite-link").hidden = false;
      toast(`Invitation for ${invitation.email}: send them the link (shown once)`, "ok");
      form.reset();
      load();
    } catch (error) { report(error); }
  });
  $("#copy-invite").addEventListener("click", (event) => copy($("#invite-url").textContent, event.target));
  load();
}

// ---------------------------------------------------------------------------------------------

const PAGES = {
  overview: overviewPage,
  deployments: deploymentsPage,
  jobs: () => (ctx.job ? jobPage() : jobsPage()),
  playground: playgroundPage,
  usage: usagePage,
  keys: keysPage,
  secrets: secretsPage,
  drive: drivePage,
  members: membersPage,
};

shell();
if ($("#login-form")) loginPage();
else if ($("#invite-form")) invitePage();
else if (PAGES[ctx.page]) PAGES[ctx.page]().catch(report);
