// The manager's dashboard: charts are server-rendered; this adds assignment and exports.

import { api, describe, flash, formValues, onSessionEnded, projectId } from "./common.js";
import "./exports.js";

const form = document.getElementById("assign-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(form);
    try {
      const out = await api("POST", `/api/v1/projects/${projectId()}/assignments`, {
        annotator_id: values.annotator_id, count: Number(values.count), gold_only: values.gold_only === "on",
      });
      document.getElementById("assign-result").textContent = `${out.assigned} task(s) assigned.`;
    } catch (error) {
      if (!onSessionEnded(error)) flash(describe(error), "error");
    }
  });
}
