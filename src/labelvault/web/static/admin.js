// Organization and system administration: users, projects, memberships, SSO, organizations.

import { api, describe, el, flash, formValues, onSessionEnded } from "./common.js";

const main = document.getElementById("main");
const org = main.dataset.org;
const project = main.dataset.project;

function fail(error) {
  if (!onSessionEnded(error)) flash(describe(error), "error");
}

function on(id, handler) {
  const form = document.getElementById(id);
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await handler(formValues(form), form);
    } catch (error) {
      fail(error);
    }
  });
}

document.addEventListener("click", async (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;
  try {
    const action = target.closest("[data-user-action]");
    if (action && org) {
      await api("POST", `/api/v1/orgs/${org}/users/${action.dataset.user}/${action.dataset.userAction}`);
      location.reload();
    }
    const remove = target.closest("[data-remove-member]");
    if (remove && project) {
      await api("DELETE", `/api/v1/projects/${project}/members/${remove.dataset.removeMember}`);
      location.reload();
    }
  } catch (error) {
    fail(error);
  }
});

on("user-form", async (values) => {
  const out = await api("POST", `/api/v1/orgs/${org}/users`, {
    email: values.email, display_name: values.display_name || "", is_org_admin: values.is_org_admin === "on",
  });
  const box = document.getElementById("user-secret");
  box.replaceChildren(`One-time password for ${out.email} (shown once): `, el("code", {}, out.one_time_password));
  box.hidden = false;
});

on("project-form", async (values) => {
  await api("POST", `/api/v1/orgs/${org}/projects`, { name: values.name });
  location.reload();
});

on("member-form", async (values) => {
  await api("PUT", `/api/v1/projects/${project}/members/${values.user_id}`, { role: values.role });
  location.reload();
});

on("org-form", async (values) => {
  await api("POST", "/api/v1/orgs", { name: values.name, region: values.region || "local" });
  location.reload();
});

const ssoForm = document.getElementById("sso-form");
if (ssoForm && org) {
  const state = document.getElementById("sso-state");
  api("GET", `/api/v1/orgs/${org}/sso`).then((sso) => {
    ssoForm.elements.issuer.value = sso.issuer;
    ssoForm.elements.client_id.value = sso.client_id;
    ssoForm.elements.require_sso.checked = sso.require_sso;
    ssoForm.elements.jit.checked = sso.jit;
    state.textContent = `Configured (${sso.issuer}); client secret ${sso.has_client_secret ? "stored" : "missing"}.`;
  }).catch(() => {
    state.textContent = "Not configured.";
  });
  on("sso-form", async (values) => {
    const body = { issuer: values.issuer, client_id: values.client_id, require_sso: values.require_sso === "on",
      jit: values.jit === "on" };
    if (values.client_secret) body.client_secret = values.client_secret;
    await api("PUT", `/api/v1/orgs/${org}/sso`, body);
    flash("SSO settings saved.", "ok");
  });
}
