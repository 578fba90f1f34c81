// The reviewer's view: the annotation over its content; accept, reject with a comment, or
// correct it with the same widgets the annotator used.

import { api, apiBlob, describe, flash, onSessionEnded, projectId } from "./common.js";
import { Editor, loadImage } from "./editor.js";

const base = `/api/v1/projects/${projectId()}/reviews`;
const status = document.getElementById("review-status");
const editorRoot = document.getElementById("editor");
const form = document.getElementById("decision");

let review = null;
let editor = null;
let busy = false;

async function next() {
  const found = await api("POST", `${base}/next`);
  review = found;
  if (!found) {
    editor = null;
    editorRoot.replaceChildren();
    form.hidden = true;
    status.textContent = "Your review queue is empty.";
    return;
  }
  let image = null;
  if (found.kind === "image") image = await loadImage(await apiBlob(`${base}/${found.review_id}/image`));
  editor = new Editor(editorRoot, {
    schema: found.label_schema, text: found.kind === "text" ? found.content.text : null, image,
    width: found.content.width, height: found.content.height, result: found.result,
  });
  form.hidden = false;
  form.reset();
  status.textContent = `Annotation version ${found.version}, submitted ${new Date(found.created_at).toLocaleString()}.`;
}

async function decide(decision) {
  if (busy || !review) return;
  const comment = form.elements.comment.value.trim();
  if (decision === "reject" && !comment) {
    flash("A rejection needs a comment for the annotator.", "warning");
    form.elements.comment.focus();
    return;
  }
  busy = true;
  try {
    const body = { decision };
    if (comment) body.comment = comment;
    if (decision === "correct") body.result = editor.result();
    const out = await api("POST", `${base}/${review.review_id}/decision`, body);
    flash(`Review ${out.state}.`, "ok");
    await next();
  } catch (error) {
    if (!onSessionEnded(error)) flash(describe(error), "error");
  } finally {
    busy = false;
  }
}

for (const button of form.querySelectorAll("[data-decision]")) {
  button.addEventListener("click", () => decide(button.dataset.decision));
}

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLElement && target.closest("input, textarea, select")) return;
  const key = event.key.toLowerCase();
  if (key === "a") decide("accept");
  else if (key === "r") decide("reject");
  else if (key === "c") decide("correct");
  else if (/^[1-9]$/.test(event.key) && editor) editor.pressLabel(Number(event.key) - 1);
});

next().catch((error) => {
  if (!onSessionEnded(error)) flash(describe(error), "error");
});
