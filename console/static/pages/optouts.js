// Opt-outs: check, add or remove one number's opt-out for a sender (POST /api/optouts/check|add|
// remove, ACS's Opt-Out API shapes), that pair's history (GET /api/optouts/history), and the
// sender's list as CSV (GET /api/optouts/export, fetched with the key and offered as a download
// from a Blob). Every value is rendered as text through dom.el.
import { el, clear, formatTime, announce } from "../dom.js";
import { showError } from "../api.js";

const SENDER_KEY = "sms-console.sender";

const VERBS = {
  check: "Checking",
  add: "Adding an opt-out for",
  remove: "Removing the opt-out of",
};

function timeNode(iso) {
  return iso ? el("time", { datetime: iso }, formatTime(iso)) : "";
}

export async function render(root, api) {
  const fromInput = el("input", { id: "opt-from", name: "from", type: "text", inputmode: "tel",
    autocomplete: "off", required: true, placeholder: "+18005550100",
    value: window.sessionStorage.getItem(SENDER_KEY) || "" });
  const toInput = el("input", { id: "opt-to", name: "to", type: "text", inputmode: "tel",
    autocomplete: "off", required: true, placeholder: "+14255550123" });
  const buttons = {
    check: el("button", { type: "submit", id: "opt-check", value: "check" }, "Check"),
    add: el("button", { type: "button", id: "opt-add", class: "danger", value: "add" }, "Opt out"),
    remove: el("button", { type: "button", id: "opt-remove", class: "secondary", value: "remove" },
      "Opt back in"),
    history: el("button", { type: "button", id: "opt-history-show", class: "secondary" }, "History"),
  };
  const form = el("form", { id: "optout-form" },
    el("fieldset", {},
      el("legend", {}, "A number's opt-out"),
      el("label", { for: "opt-from" }, "Our number (sender)"),
      fromInput,
      el("label", { for: "opt-to" }, "Their number (recipient)"),
      toInput,
      el("div", { class: "actions" }, buttons.check, buttons.add, buttons.remove, buttons.history)));
  const result = el("p", { id: "opt-result", role: "status", "aria-live": "polite" });
  const errorBox = el("div", { id: "opt-error", class: "error", role: "alert" });
  const historySection = el("section", { id: "opt-history", "aria-labelledby": "opt-history-heading", hidden: true });

  const exportFrom = el("input", { id: "opt-export-from", name: "exportFrom", type: "text",
    inputmode: "tel", autocomplete: "off", required: true, placeholder: "+18005550100",
    value: window.sessionStorage.getItem(SENDER_KEY) || "" });
  const exportButton = el("button", { type: "submit", id: "opt-export" }, "Prepare CSV");
  const exportStatus = el("p", { id: "opt-export-status", role: "status", "aria-live": "polite" });
  const exportError = el("div", { id: "opt-export-error", class: "error", role: "alert" });
  const exportLink = el("p", { id: "opt-export-link" });
  const exportForm = el("form", { id: "optout-export" },
    el("fieldset", {},
      el("legend", {}, "Export a sender's opt-out list"),
      el("label", { for: "opt-export-from" }, "Our number (sender)"),
      exportFrom,
      el("p", { class: "hint" }, "Columns: from, to, scope, optedOutAt, source, keyword. "
        + "Global opt-outs are included."),
      el("div", { class: "actions" }, exportButton)));

  root.append(
    el("h1", { id: "page-heading", tabindex: "-1" }, "Opt-outs"),
    form, errorBox, result, historySection,
    el("h2", {}, "CSV export"),
    exportForm, exportError, exportStatus, exportLink);

  function pair() {
    const from = fromInput.value.trim();
    const to = toInput.value.trim();
    if (!from) { fromInput.focus(); return null; }
    if (!to) { toInput.focus(); return null; }
    window.sessionStorage.setItem(SENDER_KEY, from);
    return { from, to };
  }

  function setBusy(busy) {
    Object.values(buttons).forEach((b) => { b.disabled = busy; });
  }

  async function change(action) {
    const p = pair();
    if (!p) return;
    clear(errorBox);
    setBusy(true);
    announce(result, `${VERBS[action]} ${p.to}…`);
    result.removeAttribute("data-opted-out");
    try {
      const answer = await api.post(`/optouts/${action}`, { from: p.from, recipients: [{ to: p.to }] });
      const entry = answer && Array.isArray(answer.value) ? answer.value[0] : null;
      if (!entry) {
        announce(result, "The service gave no answer for this number.");
      } else if (entry.httpStatusCode >= 300) {
        announce(result, "");
        errorBox.append(el("p", {}, `${entry.to || p.to}: ${entry.errorMessage || `error ${entry.httpStatusCode}`}`));
      } else {
        const opted = action === "check" ? Boolean(entry.isOptedOut) : action === "add";
        result.dataset.optedOut = String(opted);
        const verb = action === "check" ? (opted ? "is opted out of" : "is not opted out of")
          : (opted ? "is now opted out of" : "is now opted in to");
        announce(result, `${entry.to || p.to} ${verb} ${p.from}.`);
        if (!historySection.hidden) await showHistory(p);
      }
    } catch (error) {
      showError(errorBox, error);
      announce(result, "The request failed.");
    } finally {
      setBusy(false);
    }
  }

  async function showHistory(p) {
    clear(historySection);
    historySection.hidden = false;
    const heading = el("h2", { id: "opt-history-heading", tabindex: "-1" }, `History of ${p.to} with ${p.from}`);
    historySection.append(heading);
    let answer;
    try {
      answer = await api.get("/optouts/history", { from: p.from, to: p.to });
    } catch (error) {
      const box = el("div", { class: "error", role: "alert" });
      historySection.append(box);
      showError(box, error);
      return;
    }
    const entries = (answer && answer.value) || [];
    if (!entries.length) {
      historySection.append(el("p", { id: "opt-history-empty" }, "No opt-out or opt-in recorded for this pair."));
      return;
    }
    historySection.append(el("div", { class: "table-wrap" }, el("table", { id: "opt-history-table" },
      el("caption", { class: "visually-hidden" }, "Opt-out history, oldest first"),
      el("thead", {}, el("tr", {}, ["When", "Action", "Scope", "Source", "Keyword", "Text", "Reason"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, entries.map((e) => el("tr", { "data-action": e.action },
        el("td", {}, timeNode(e.at)),
        el("td", {}, e.action),
        el("td", {}, e.from === "global" ? "global" : e.from),
        el("td", {}, e.source),
        el("td", {}, e.keyword || ""),
        el("td", { class: "sample" }, e.text || ""),
        el("td", {}, e.reason || "")))))));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    change("check");
  });
  buttons.add.addEventListener("click", () => change("add"));
  buttons.remove.addEventListener("click", () => change("remove"));
  buttons.history.addEventListener("click", async () => {
    const p = pair();
    if (!p) return;
    setBusy(true);
    try {
      await showHistory(p);
      const heading = historySection.querySelector("h2");
      if (heading) heading.focus();
    } finally {
      setBusy(false);
    }
  });

  let objectUrl = null;
  exportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const from = exportFrom.value.trim();
    if (!from) { exportFrom.focus(); return; }
    clear(exportError);
    clear(exportLink);
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    exportButton.disabled = true;
    announce(exportStatus, "Fetching the list…");
    try {
      const text = await api.get("/optouts/export", { from });
      const csv = typeof text === "string" ? text : "";
      const lines = csv.split(/\r?\n/).filter((line) => line.length > 0);
      const rows = Math.max(lines.length - 1, 0);
      objectUrl = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
      // dom.el refuses href (data must never become a link); this one is our own Blob's URL.
      const link = document.createElement("a");
      link.href = objectUrl;
      link.download = `optouts-${from.replace(/[^0-9A-Za-z+]/g, "")}.csv`;
      link.id = "opt-export-download";
      link.textContent = `Download optouts-${from.replace(/[^0-9A-Za-z+]/g, "")}.csv (${rows} row${rows === 1 ? "" : "s"})`;
      exportLink.append(link);
      announce(exportStatus, `The list of ${from} is ready: ${rows} opted-out number${rows === 1 ? "" : "s"}.`);
      link.focus();
    } catch (error) {
      showError(exportError, error);
      announce(exportStatus, "The export failed.");
    } finally {
      exportButton.disabled = false;
    }
  });
}
