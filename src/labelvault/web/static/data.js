// The data owner's page: upload with progress (XMLHttpRequest reports upload progress), the
// import report, and exports.

import { ApiError, describe, el, flash, projectId } from "./common.js";
import "./exports.js";

const form = document.getElementById("import-form");
const bar = document.getElementById("import-progress");
const statusLine = document.getElementById("import-status");
const report = document.getElementById("import-report");
const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

function upload(file, params) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/projects/${projectId()}/imports?${params}`);
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.setRequestHeader("accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.upload.addEventListener("load", () => {
      statusLine.textContent = "Uploaded; encrypting and storing items…";
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response, xhr.getResponseHeader("retry-after")));
    });
    xhr.addEventListener("error", () => reject(new Error("the upload failed")));
    xhr.send(file);
  });
}

function showReport(values) {
  report.replaceChildren();
  for (const [key, value] of Object.entries(values || {})) {
    if (value !== null && typeof value === "object") continue;
    report.append(el("dt", {}, key.replaceAll("_", " ")), el("dd", {}, String(value)));
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const file = data.get("file");
  if (!(file instanceof File) || file.size === 0) return;
  const params = new URLSearchParams({ name: file.name.slice(0, 200), on_error: String(data.get("on_error")) });
  if (data.get("format")) params.set("format", String(data.get("format")));
  bar.hidden = false;
  bar.value = 0;
  statusLine.textContent = "Uploading…";
  try {
    const out = await upload(file, params);
    bar.value = 100;
    statusLine.textContent = `Imported: ${out.items_added} item(s) added.`;
    showReport(out);
  } catch (error) {
    statusLine.textContent = "";
    flash(describe(error), "error");
    if (error instanceof ApiError && error.problem.report) showReport(error.problem.report);
  }
});
