// The annotator's workspace: one task at a time, fetched without reloading the page.

import { api, apiBlob, describe, el, flash, onSessionEnded, projectId } from "./common.js";
import { Editor, loadImage, summarize } from "./editor.js";

const base = `/api/v1/projects/${projectId()}`;
const status = document.getElementById("task-status");
const editorRoot = document.getElementById("editor");
const submitButton = document.getElementById("submit");
const skipButton = document.getElementById("skip");
const nextButton = document.getElementById("next");
const commentBox = document.getElementById("review-comment");
const historyList = document.getElementById("history");

let task = null;
let editor = null;
let busy = false;

function fail(error) {
  if (!onSessionEnded(error)) flash(describe(error), "error");
}

async function show(view, reopened) {
  task = view;
  let image = null;
  if (view.image_url) image = await loadImage(await apiBlob(`${base}/${view.image_url}`));
  editor = new Editor(editorRoot, {
    schema: view.label_schema, text: view.kind === "text" ? view.text : null, image,
    width: view.width, height: view.height, result: view.annotation,
  });
  status.textContent = reopened
    ? `Revising a submitted task (${view.annotation_state}).`
    : "Your current task.";
  commentBox.hidden = !view.review_comment;
  commentBox.textContent = view.review_comment ? `Reviewer: ${view.review_comment}` : "";
  submitButton.disabled = false;
  skipButton.disabled = Boolean(reopened);
  nextButton.hidden = !reopened;
}

function empty() {
  task = null;
  editor = null;
  editorRoot.replaceChildren();
  status.textContent = "No task for you right now. Check back later.";
  submitButton.disabled = true;
  skipButton.disabled = true;
  nextButton.hidden = true;
}

async function nextTask() {
  const view = await api("POST", `${base}/tasks/next`);
  if (view) await show(view, false);
  else empty();
}

async function refreshHistory() {
  const rows = await api("GET", `${base}/my/annotations?limit=5`);
  historyList.replaceChildren(...rows.map((row) => {
    const when = new Date(row.updated_at).toLocaleTimeString();
    const item = el("li", {}, `${when} · ${row.state} · ${summarize(row.result)} `);
    if (row.editable) {
      const reopen = el("button", { type: "button", class: "link", dataset: { task: row.task_id } }, "reopen");
      reopen.addEventListener("click", () => guarded(async () => {
        await show(await api("GET", `${base}/tasks/${row.task_id}`), true);
      }));
      item.append(reopen);
    }
    return item;
  }));
}

async function guarded(work) {
  if (busy) return;
  busy = true;
  try {
    await work();
  } catch (error) {
    fail(error);
  } finally {
    busy = false;
  }
}

function submit() {
  return guarded(async () => {
    if (!task || !editor) return;
    if (!editor.ready()) {
      flash("Choose a label first.", "warning");
      return;
    }
    const out = await api("POST", `${base}/tasks/${task.task_id}/annotation`, { result: editor.result() });
    flash(`Submitted (version ${out.version}).`, "ok");
    await refreshHistory();
    await nextTask();
  });
}

function skip() {
  return guarded(async () => {
    if (!task || nextButton.hidden === false) return;
    await api("POST", `${base}/tasks/${task.task_id}/skip`);
    flash("Skipped.", "info");
    await nextTask();
  });
}

submitButton.addEventListener("click", submit);
skipButton.addEventListener("click", skip);
nextButton.addEventListener("click", () => guarded(nextTask));

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLElement && target.closest("input, textarea, select")) return;
  if (event.key === "Enter") {
    event.preventDefault();
    submit();
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    skip();
  } else if (/^[1-9]$/.test(event.key) && editor) {
    event.preventDefault();
    editor.pressLabel(Number(event.key) - 1);
  }
});

guarded(async () => {
  await nextTask();
  await refreshHistory();
});
