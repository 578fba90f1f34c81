// Sign-in: password, then the second factor (or its enrolment), then a password change when
// required; errors as plain text (401), lockouts with their Retry-After (429).

import { ApiError, api, describe, el, setCsrf } from "./common.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("login-error");
const steps = {
  password: document.getElementById("password-step"),
  code: document.getElementById("code-step"),
  enrol: document.getElementById("enrol-step"),
  recovery: document.getElementById("recovery-step"),
  change: document.getElementById("password-change-step"),
};

function showStep(name) {
  for (const [key, node] of Object.entries(steps)) node.hidden = key !== name;
  const input = steps[name].querySelector("input:not([type=hidden])");
  if (input) input.focus();
}

function showError(error) {
  let message = describe(error);
  if (error instanceof ApiError) {
    if (error.status === 401) message = error.message || "Email or password is not correct.";
    if (error.status === 429) {
      const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter / 60)} minute(s).` : "";
      message = `Too many attempts: sign-in is locked for now.${wait}`;
    }
  }
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}

function done() {
  location.assign(main.dataset.next || "/");
}

async function beginEnrolment() {
  const begin = await api("POST", "/api/v1/auth/mfa/totp/begin");
  document.getElementById("totp-secret").textContent = begin.secret;
  document.getElementById("totp-uri").textContent = begin.otpauth_uri;
  showStep("enrol");
}

async function advance(state) {
  if (state.csrf_token) setCsrf(state.csrf_token);
  if (state.mfa_enrollment_required) return beginEnrolment();
  if (state.mfa_required || state.mfa_pending) return showStep("code");
  if (state.password_change_required) return showStep("change");
  return done();
}

function handle(form, work) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await work(new FormData(form));
    } catch (error) {
      showError(error);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

handle(steps.password, async (data) => {
  const state = await api("POST", "/api/v1/auth/login", {
    email: String(data.get("email")), password: String(data.get("password")),
  });
  steps.password.reset();
  await advance(state);
});

handle(steps.code, async (data) => {
  const state = await api("POST", "/api/v1/auth/mfa/verify", { code: String(data.get("code")).trim() });
  steps.code.reset();
  await advance({ ...state, mfa_required: false });
});

handle(steps.enrol, async (data) => {
  const out = await api("POST", "/api/v1/auth/mfa/totp/confirm", { code: String(data.get("code")).trim() });
  const list = document.getElementById("recovery-codes");
  list.replaceChildren(...out.recovery_codes.map((code) => el("li", {}, el("code", {}, code))));
  showStep("recovery");
});

document.getElementById("recovery-done").addEventListener("click", async () => {
  try {
    const state = await api("GET", "/api/v1/auth/session");
    await advance({ ...state, mfa_pending: false, mfa_enrollment_required: false });
  } catch (error) {
    showError(error);
  }
});

handle(steps.change, async (data) => {
  await api("POST", "/api/v1/auth/password", {
    current_password: String(data.get("current_password")), new_password: String(data.get("new_password")),
  });
  done();
});

document.getElementById("sso-step").addEventListener("submit", (event) => {
  event.preventDefault();
  const org = String(new FormData(event.target).get("org") || "").trim();
  if (!/^[0-9a-fA-F-]{32,36}$/.test(org)) {
    showError(new Error("Enter your organization's id for single sign-on."));
    return;
  }
  const next = encodeURIComponent(main.dataset.next || "/");
  location.assign(`/api/v1/auth/sso/${org}/start?next=${next}`);
});

// Resume a sign-in left half-way (second factor or password change still due).
if (main.dataset.resume) {
  api("GET", "/api/v1/auth/session").then(advance).catch(() => showStep("password"));
}
