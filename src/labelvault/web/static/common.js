// Shared by every page: a fetch that carries the session's CSRF token, DOM built from text
// nodes only (the CSP's Trusted Types forbid HTML sinks anyway), messages, sign-out.

const metaContent = (name) => {
  const node = document.querySelector(`meta[name="${name}"]`);
  return node ? node.getAttribute("content") || "" : "";
};

let csrf = metaContent("csrf-token");
export const viewer = metaContent("lv-viewer");

export function setCsrf(token) {
  csrf = token || "";
}

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super((problem && problem.detail) || `request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

async function send(method, path, init) {
  init.method = method;
  init.credentials = "same-origin";
  init.cache = "no-store";
  init.redirect = "manual";
  init.headers = { accept: "application/json", ...(init.headers || {}) };
  if (csrf) init.headers["x-csrf-token"] = csrf;
  const response = await fetch(path, init);
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = {};
    }
    throw new ApiError(response.status, problem, response.headers.get("retry-after"));
  }
  return response;
}

export async function api(method, path, body) {
  const init = {};
  if (body !== undefined) {
    init.headers = { "content-type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await send(method, path, init);
  if (response.status === 204) return null;
  return response.json();
}

export async function apiBlob(path) {
  const response = await send("GET", path, { headers: { accept: "image/png" } });
  return response.blob();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = `flash ${kind}`;
  box.hidden = !message;
}

export function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return "Your session has ended: sign in again.";
    if (error.status === 429 && error.retryAfter) {
      return `${error.message} (try again in ${error.retryAfter} s)`;
    }
    return error.message;
  }
  return String(error && error.message ? error.message : error);
}

export function onSessionEnded(error) {
  if (error instanceof ApiError && error.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return true;
  }
  return false;
}

export function formValues(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (key !== "csrf_token") out[key] = value;
  }
  return out;
}

export function projectId() {
  return document.getElementById("main").dataset.project;
}

export function utcNow() {
  return new Date().toISOString().slice(0, 19).replace("T", " ");
}

// A light per-viewer watermark over rendered content: the viewer and the time, tiled.
export function watermark(container) {
  const layer = el("div", { class: "wm", "aria-hidden": "true", dataset: { testid: "watermark" } });
  const caption = `${viewer} · ${utcNow()} UTC`;
  for (let i = 0; i < 40; i += 1) layer.append(el("span", {}, caption));
  container.append(layer);
  return layer;
}

// Copying, dragging and the context menu are discouraged on protected views (a speed bump:
// the watermark is the real control).
export function discourageCopy(root) {
  const refuse = (event) => {
    event.preventDefault();
    if (event.type === "copy" || event.type === "cut") {
      flash("Copying is disabled in this view.", "warning");
    }
  };
  for (const type of ["copy", "cut", "dragstart", "contextmenu"]) {
    root.addEventListener(type, refuse);
  }
}

async function signOut(everywhere) {
  try {
    await api("POST", everywhere ? "/api/v1/auth/logout-all" : "/api/v1/auth/logout");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      flash(describe(error), "error");
      return;
    }
  }
  location.assign("/login");
}

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target.closest("[data-action]") : null;
  if (!target) return;
  if (target.dataset.action === "sign-out") signOut(false);
  if (target.dataset.action === "sign-out-all") signOut(true);
});

if (document.body.classList.contains("protected")) discourageCopy(document.body);
