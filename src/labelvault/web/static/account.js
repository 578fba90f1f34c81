// Own API tokens: list, create (secret shown once, as text), revoke.

import { api, describe, el, flash, onSessionEnded } from "./common.js";

const rows = document.getElementById("token-rows");
const form = document.getElementById("token-form");
const secretBox = document.getElementById("token-secret");

function fail(error) {
  if (!onSessionEnded(error)) flash(describe(error), "error");
}

async function refresh() {
  const tokens = await api("GET", "/api/v1/tokens");
  rows.replaceChildren(...tokens.filter((t) => !t.revoked_at).map((t) => {
    const revoke = el("button", { type: "button", class: "link" }, "revoke");
    revoke.addEventListener("click", async () => {
      try {
        await api("DELETE", `/api/v1/tokens/${t.id}`);
        await refresh();
      } catch (error) {
        fail(error);
      }
    });
    return el("tr", {}, el("td", {}, t.name), el("td", {}, el("code", {}, t.prefix)), el("td", {}, t.max_role),
      el("td", {}, new Date(t.expires_at).toLocaleDateString()),
      el("td", {}, t.last_used_at ? new Date(t.last_used_at).toLocaleString() : "never"), el("td", {}, revoke));
  }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  try {
    const out = await api("POST", "/api/v1/tokens", {
      name: String(data.get("name")), project_ids: data.getAll("project_ids").map(String),
      max_role: String(data.get("max_role")), expires_in_days: Number(data.get("expires_in_days")),
    });
    secretBox.replaceChildren("New token (shown once): ", el("code", {}, out.token));
    secretBox.hidden = false;
    form.reset();
    await refresh();
  } catch (error) {
    fail(error);
  }
});

refresh().catch(fail);
