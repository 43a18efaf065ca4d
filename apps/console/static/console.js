// Shared by every page: the API client (session cookie), the header, and formatting.
"use strict";

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !location.pathname.startsWith("/login")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("signed out");
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body && body.detail;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail || response.statusText));
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

function when(iso) {
  // A time in the browser's zone, with the zone named: "27 Nov 2026, 10:04:05 GMT+1".
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    timeZoneName: "short",
  });
}

function money(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(Number(amount));
  } catch (e) {
    return `${Number(amount).toFixed(2)} ${currency || ""}`;
  }
}

function due(iso) {
  const minutes = Math.round((new Date(iso) - Date.now()) / 60000);
  if (minutes < 0) return el("span", { class: "overdue" }, `overdue ${-minutes} min`);
  return el("span", {}, minutes < 120 ? `in ${minutes} min` : `in ${Math.round(minutes / 60)} h`);
}

function level(l) { return el("span", { class: `level ${l}` }, l || ""); }

async function header(here) {
  const me = await api("/api/me");
  const links = [["/", "Queue"], ["/search", "Search"], ["/lists", "Lists"], ["/audit", "Audit"]];
  const bar = el("header", {},
    el("strong", {}, "fraudstream"),
    links.map(([href, name]) => el("a", { href, class: href === here ? "here" : "" }, name)),
    el("span", { class: "who" }, `${me.name} (${me.role}) · times in ${ZONE}`,
      el("button", { onclick: async () => { await api("/api/session", { method: "DELETE" }); location.href = "/login"; } }, "Sign out")));
  document.body.prepend(bar);
  return me;
}

function say(target, text, ok = false) {
  target.className = ok ? "notice" : "error";
  target.textContent = text;
}
