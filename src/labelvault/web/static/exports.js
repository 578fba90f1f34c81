// Export requests and approvals: a second person approves (the server refuses the requester);
// once built, the requester alone gets a one-time, short-lived download link. Rendered as text.

import { api, describe, el, flash, onSessionEnded, projectId } from "./common.js";

const base = `/api/v1/projects/${projectId()}/exports`;
const rows = document.getElementById("export-rows");
const form = document.getElementById("export-form");
const errorBox = document.getElementById("exports-error");
const meId = (document.querySelector('meta[name="lv-viewer-id"]') || { getAttribute: () => "" })
  .getAttribute("content");

function fail(error) {
  if (onSessionEnded(error)) return;
  errorBox.textContent = describe(error);
  errorBox.hidden = false;
}

async function act(work, success) {
  try {
    await work();
    await refresh();
    if (success) flash(success, "ok");
  } catch (error) {
    fail(error);
  }
}

function button(text, testid, handler) {
  const node = el("button", { type: "button", class: "link", dataset: { testid } }, text);
  node.addEventListener("click", handler);
  return node;
}

function actions(row) {
  const mine = row.requested_by === meId;
  if (row.state === "pending_approval" && !mine) {
    return [
      button("approve", "approve-export", () => act(() => api("POST", `${base}/${row.export_id}/approve`), "Export approved.")),
      " ",
      button("reject", "reject-export", () => act(() => api("POST", `${base}/${row.export_id}/reject`), "Export rejected.")),
    ];
  }
  if (row.state === "pending_approval") return ["waiting for a second person"];
  const until = row.expires_at ? ` (until ${new Date(row.expires_at).toLocaleString()})` : "";
  if (row.state === "ready" && mine) {
    return [button("download", "download-export", () => act(async () => {
      const link = await api("POST", `${base}/${row.export_id}/link`);
      location.assign(link.url);
    })), until];
  }
  if (row.state === "ready") return [`ready${until}`];
  return [];
}

export async function refresh() {
  if (!rows) return;
  const items = await api("GET", base);
  rows.replaceChildren(...items.map((row) => el("tr", { dataset: { state: row.state, export: row.export_id } },
    el("td", {}, new Date(row.created_at).toLocaleString()),
    el("td", {}, row.requested_by === meId ? "you" : row.requested_by.slice(0, 8)),
    el("td", {}, row.format),
    el("td", { dataset: { testid: "export-state" } }, row.state),
    el("td", {}, row.item_count === null || row.item_count === undefined ? "" : String(row.item_count)),
    el("td", {}, ...actions(row)))));
  errorBox.hidden = true;
}

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    act(() => api("POST", base, {
      format: String(data.get("format")), only_accepted: data.get("only_accepted") === "on",
    }), "Export requested.");
  });
  refresh().catch(fail);
}
