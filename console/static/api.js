// The API client: same origin's /api, the function key asked for once per browser session
// (sessionStorage, so closing the browser forgets it) and sent as x-functions-key. A 401 asks
// again and retries once; problem+json errors become ApiError with the parsed problem.
import { el, clear } from "./dom.js";

const KEY_STORAGE = "sms-console.function-key";
export const BASE = `${window.location.origin}/api`;

/** A failed call: `status` (0 for a network failure) and `problem` (RFC 9457 body or a stand-in). */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem || {};
  }
}

export function storedKey() {
  return window.sessionStorage.getItem(KEY_STORAGE) || "";
}

export function forgetKey() {
  window.sessionStorage.removeItem(KEY_STORAGE);
}

let pendingPrompt = null;

/**
 * Ask for the function key in a modal dialog (one at a time: concurrent 401s share it).
 * `reason` says why (first visit, or the key was refused).
 */
export function askForKey(reason) {
  if (pendingPrompt) return pendingPrompt;
  pendingPrompt = new Promise((resolve) => {
    const dialog = el("dialog", { id: "key-dialog", "aria-labelledby": "key-title" });
    const input = el("input", {
      id: "key-input", name: "key", type: "password", autocomplete: "off", required: true,
      "aria-describedby": "key-help key-reason",
    });
    const form = el("form", { id: "key-form" },
      el("h2", { id: "key-title" }, "Function key"),
      el("p", { id: "key-help" },
        "The console calls this app's API with your function key. It is kept in this browser "
        + "tab's session only. Locally, `make run` prints it."),
      el("p", { id: "key-reason", class: "error", role: "alert" }, reason || ""),
      el("label", { for: "key-input" }, "Function key"),
      input,
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Use this key")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) { input.focus(); return; }
      window.sessionStorage.setItem(KEY_STORAGE, key);
      dialog.close();
      dialog.remove();
      pendingPrompt = null;
      resolve(key);
    });
    // Escape would leave the console without a key: keep the dialog until one is given.
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    dialog.append(form);
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

function url(path, params) {
  const u = new URL(BASE + (path.startsWith("/") ? path : `/${path}`));
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => u.searchParams.append(name, String(v)));
    else u.searchParams.set(name, String(value));
  }
  return u.toString();
}

async function parse(response) {
  const type = response.headers.get("content-type") || "";
  if (response.status === 204) return null;
  if (type.includes("json")) return response.json();
  return response.text();
}

async function request(method, path, { params, body, headers, contentType } = {}) {
  let key = storedKey() || await askForKey("");
  for (let attempt = 0; ; attempt += 1) {
    const h = { Accept: "application/json, application/problem+json", ...(headers || {}) };
    h["x-functions-key"] = key;
    let payload;
    if (body !== undefined) {
      if (contentType && contentType !== "application/json") {
        payload = body;
      } else {
        payload = typeof body === "string" ? body : JSON.stringify(body);
      }
      h["Content-Type"] = contentType || "application/json";
    }
    let response;
    try {
      response = await fetch(url(path, params), { method, headers: h, body: payload,
        credentials: "same-origin", cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, { title: "Network error", detail: `The API did not answer: ${error.message}` });
    }
    if (response.status === 401 && attempt < 3) {
      forgetKey();
      key = await askForKey("That key was refused (401). Enter the function key again.");
      continue;
    }
    const data = await parse(response).catch(() => null);
    if (!response.ok) {
      const problem = data && typeof data === "object" ? data
        : { title: response.statusText || `HTTP ${response.status}`, detail: typeof data === "string" ? data : "" };
      throw new ApiError(response.status, problem);
    }
    return data;
  }
}

/** The object every page receives (PAGE CONTRACT in console/README.md). */
export const api = {
  get: (path, params) => request("GET", path, { params }),
  post: (path, body, { headers, contentType } = {}) => request("POST", path, { body, headers, contentType }),
  // As post: a Blob with `contentType: "application/octet-stream"` is sent as its bytes.
  put: (path, body, { headers, contentType } = {}) => request("PUT", path, { body, headers, contentType }),
  del: (path) => request("DELETE", path),
};

/**
 * Render an error into `node` as text: the problem's title and detail, and its `errors` per
 * field as a list. Returns `node`.
 */
export function showError(node, error) {
  clear(node);
  const problem = (error && error.problem) || {};
  const status = error && error.status;
  const title = problem.title || (error && error.message) || "Error";
  node.append(el("p", { class: "problem-title" }, status ? `${title} (${status})` : title));
  if (problem.detail) node.append(el("p", { class: "problem-detail" }, problem.detail));
  if (Array.isArray(problem.errors) && problem.errors.length) {
    node.append(el("ul", { class: "problem-errors" },
      problem.errors.map((e) => el("li", {}, el("code", {}, String(e.field ?? "")), ": ", String(e.message ?? "")))));
  }
  return node;
}
