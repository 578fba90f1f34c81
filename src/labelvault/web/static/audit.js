// The audit-trail viewer: filters, newest first, paged by cursor. Every value shown as text.

import { api, describe, el, flash, onSessionEnded } from "./common.js";

const endpoint = document.getElementById("main").dataset.endpoint;
const form = document.getElementById("audit-filters");
const rows = document.getElementById("audit-rows");
const more = document.getElementById("audit-more");
let cursor = null;

function query() {
  const params = new URLSearchParams({ limit: "50" });
  for (const [key, value] of new FormData(form).entries()) {
    if (key === "csrf_token" || !value) continue;
    params.set(key, key === "since" || key === "until" ? new Date(String(value)).toISOString() : String(value));
  }
  if (cursor !== null) params.set("cursor", String(cursor));
  return params;
}

function row(e) {
  const details = e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : "";
  return el("tr", { class: e.outcome && e.outcome !== "success" ? "attention" : "" },
    el("td", {}, String(e.seq ?? "")), el("td", {}, e.ts || e.time || ""), el("td", {}, e.action || ""),
    el("td", {}, e.outcome || ""), el("td", {}, e.actor_label || e.actor_id || e.actor_kind || ""),
    el("td", {}, [e.resource_type, e.resource_id].filter(Boolean).join(" ")), el("td", { class: "details" }, details));
}

async function load(append) {
  try {
    const page = await api("GET", `${endpoint}?${query()}`);
    const built = page.events.map(row);
    if (append) rows.append(...built);
    else rows.replaceChildren(...built);
    cursor = page.next_cursor;
    more.hidden = cursor === null || cursor === undefined;
  } catch (error) {
    if (!onSessionEnded(error)) flash(describe(error), "error");
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  cursor = null;
  load(false);
});
more.addEventListener("click", () => load(true));
load(false);
