// Messages: search by recipient, sender, status, tag and time (GET /api/messages, newest first,
// paged with its continuationToken), and one message's history as a timeline
// (GET /api/messages/{id}). Every value from the API is rendered as text through dom.el.
import { el, clear, formatTime, announce } from "../dom.js";
import { showError } from "../api.js";
import { continuationPager } from "../pager.js";

const STATUSES = ["queued", "scheduled", "sent", "delivered", "failed", "expired", "blocked",
  "rejected", "canceled"];
const SENDER_KEY = "sms-console.sender";
const PAGE_SIZE = 50;

/** A datetime-local value (the user's zone) as an ISO-8601 instant, or "" for none. */
function isoOf(local) {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function field(id, label, control, hint) {
  return el("div", { class: "field" },
    el("label", { for: id }, label),
    control,
    hint ? el("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function statusBadge(status) {
  return el("span", { class: `badge ${status || ""}` }, status || "unknown");
}

function timeNode(iso) {
  return iso ? el("time", { datetime: iso }, formatTime(iso)) : "";
}

/** Query parameters from the hash (`#/messages?id=...`), for links from other pages. */
function hashParams() {
  const hash = window.location.hash;
  const at = hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
}

export async function render(root, api) {
  const inputs = {
    to: el("input", { id: "msg-to", name: "to", type: "text", inputmode: "tel",
      autocomplete: "off", placeholder: "+14255550123" }),
    from: el("input", { id: "msg-from", name: "from", type: "text", inputmode: "tel",
      autocomplete: "off", placeholder: "+18005550100",
      value: window.sessionStorage.getItem(SENDER_KEY) || "" }),
    status: el("select", { id: "msg-status", name: "status" },
      el("option", { value: "" }, "Any status"),
      STATUSES.map((s) => el("option", { value: s }, s))),
    tag: el("input", { id: "msg-tag", name: "tag", type: "text", autocomplete: "off" }),
    since: el("input", { id: "msg-since", name: "since", type: "datetime-local" }),
    until: el("input", { id: "msg-until", name: "until", type: "datetime-local" }),
    limit: el("select", { id: "msg-limit", name: "limit" },
      [10, 25, 50, 100].map((n) => el("option", { value: n, selected: n === PAGE_SIZE }, String(n)))),
  };
  const searchButton = el("button", { type: "submit", id: "msg-search" }, "Search");
  const form = el("form", { id: "message-search", role: "search", "aria-label": "Search messages" },
    el("fieldset", {},
      el("legend", {}, "Search messages"),
      field("msg-to", "Recipient", inputs.to),
      field("msg-from", "Sender (our number)", inputs.from,
        "Empty: every sender, or with a recipient the app's default sender."),
      field("msg-status", "Status", inputs.status),
      field("msg-tag", "Tag", inputs.tag),
      field("msg-since", "Created from", inputs.since,
        "Your local time. Without a recipient the range defaults to the last 24 hours "
        + "and holds at most 31 days."),
      field("msg-until", "Created until", inputs.until),
      field("msg-limit", "Per page", inputs.limit),
      el("div", { class: "actions" }, searchButton)));

  const status = el("p", { id: "msg-results-status", role: "status", "aria-live": "polite" });
  const errorBox = el("div", { id: "msg-error", class: "error", role: "alert" });
  const tbody = el("tbody", {});
  const table = el("table", { id: "msg-results", hidden: true },
    el("caption", { class: "visually-hidden" }, "Messages found, newest first"),
    el("thead", {}, el("tr", {},
      ["Created", "To", "From", "Status", "Tag", "Message", ""].map((h) => el("th", { scope: "col" }, h)))),
    tbody);
  const moreButton = el("button", { type: "button", id: "msg-more", class: "secondary", hidden: true }, "More");

  const openInput = el("input", { id: "msg-open-id", name: "id", type: "text", autocomplete: "off" });
  const openForm = el("form", { id: "message-open" },
    el("fieldset", {},
      el("legend", {}, "Open a message by id"),
      field("msg-open-id", "Message id", openInput),
      el("div", { class: "actions" }, el("button", { type: "submit", class: "secondary" }, "Open"))));

  const detail = el("section", { id: "msg-detail", "aria-labelledby": "msg-detail-heading", hidden: true });
  const detailStatus = el("p", { id: "msg-detail-status", class: "visually-hidden", role: "status",
    "aria-live": "polite" });

  root.append(
    el("h1", { id: "page-heading", tabindex: "-1" }, "Messages"),
    form, errorBox, status,
    el("div", { class: "table-wrap" }, table),
    el("div", { class: "actions" }, moreButton),
    openForm, detailStatus, detail);

  let query = null;

  // While the open message can still change (queued, sent), its timeline is refreshed every few
  // seconds for a while; a newer open (or leaving the page) stops that.
  let opened = 0;
  const LIVE = new Set(["queued", "sent"]);

  async function showMessage(id, opener, live) {
    const mine = live ? live.mine : ++opened;
    if (!live) {
      clear(detail);
      detail.hidden = false;
      announce(detailStatus, "Loading the message…");
    }
    let message;
    try {
      message = await api.get(`/messages/${encodeURIComponent(id)}`);
    } catch (error) {
      if (live) return;
      const box = el("div", { class: "error", role: "alert" });
      detail.append(el("h2", { id: "msg-detail-heading", tabindex: "-1" }, "Message"), box);
      showError(box, error);
      announce(detailStatus, "The message could not be loaded.");
      return;
    }
    if (mine !== opened || !detail.isConnected) return;
    const history = Array.isArray(message.history) ? message.history : [];
    const rounds = live ? live.rounds + 1 : 0;
    if (LIVE.has(message.status) && rounds < 40) {
      window.setTimeout(() => showMessage(id, opener, { mine, rounds, seen: history.length,
        status: message.status }), 1500);
    }
    if (live && live.seen === history.length && live.status === message.status) return;
    const hadFocus = detail.contains(document.activeElement);
    clear(detail);
    const heading = el("h2", { id: "msg-detail-heading", tabindex: "-1" }, `Message ${message.id}`);
    const facts = [
      ["From", message.from], ["To", message.to], ["Status", statusBadge(message.status)],
      ["Tag", message.tag || "—"], ["Segments", `${message.segments} (${message.encoding})`],
      ["Created", timeNode(message.createdAt)], ["Sent", timeNode(message.sentAt) || "—"],
      ["Updated", timeNode(message.updatedAt)],
      ["Provider id", message.providerMessageId || "—"],
    ];
    if (message.error) facts.push(["Error", message.error]);
    detail.append(
      heading,
      el("p", { class: "sample", id: "msg-detail-text" }, message.message),
      el("div", { class: "table-wrap" }, el("table", { id: "msg-detail-facts" },
        el("caption", { class: "visually-hidden" }, "The message's details"),
        el("tbody", {}, facts.map(([name, value]) => el("tr", {},
          el("th", { scope: "row" }, name), el("td", {}, value)))))),
      el("h3", { id: "msg-timeline-heading" }, "History"),
      history.length
        ? el("ol", { id: "msg-timeline", class: "timeline", "aria-labelledby": "msg-timeline-heading" },
          history.map((event) => el("li", { "data-status": event.status },
            timeNode(event.at), " ", statusBadge(event.status),
            event.detail ? el("span", { class: "timeline-detail" }, " ", event.detail) : null,
            event.data && Object.keys(event.data).length
              ? el("details", {}, el("summary", {}, "Event data"),
                el("pre", { class: "sample" }, JSON.stringify(event.data, null, 2))) : null)))
        : el("p", { class: "hint" }, "No history recorded."),
      el("div", { class: "actions" },
        el("a", { id: "msg-detail-conversation", href: `#/conversations?${new URLSearchParams({
          number: message.to, from: message.from })}` }, `Conversation with ${message.to}`),
        el("button", { type: "button", class: "secondary", id: "msg-detail-close", on: { click: () => {
          opened += 1;
          detail.hidden = true;
          clear(detail);
          if (opener && opener.isConnected) opener.focus();
        } } }, "Close")));
    announce(detailStatus, `Message ${message.id}: ${message.status}, ${history.length} events`);
    if (!live || hadFocus) heading.focus();
  }

  function row(message) {
    const open = el("button", { type: "button", class: "secondary", "data-id": message.id,
      "aria-label": `History of the message to ${message.to} created ${formatTime(message.createdAt)}` },
    "History");
    open.addEventListener("click", () => showMessage(message.id, open));
    return el("tr", { "data-id": message.id },
      el("td", {}, timeNode(message.createdAt)),
      el("td", {}, message.to),
      el("td", {}, message.from),
      el("td", {}, statusBadge(message.status),
        message.error ? el("div", { class: "hint" }, message.error) : null),
      el("td", {}, message.tag || ""),
      el("td", { class: "sample" }, message.message),
      el("td", {}, open));
  }

  const pager = continuationPager({
    fetchPage: (continuationToken) => api.get("/messages", { ...query, continuationToken }),
    itemsOf: (page) => page.messages,
    reset: () => clear(tbody),
    add: (messages) => messages.forEach((m) => tbody.append(row(m))),
    more: moreButton,
    busy: [searchButton],
    loading: (first) => {
      clear(errorBox);
      announce(status, first ? "Searching…" : "Loading more…");
    },
    failed: (error) => {
      showError(errorBox, error);
      announce(status, "The search failed.");
    },
    loaded: ({ shown, more }) => {
      table.hidden = shown === 0;
      announce(status, shown === 0 && !more ? "No messages match."
        : `${shown} message${shown === 1 ? "" : "s"} shown${more ? "; more are available" : ""}.`);
    },
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const from = inputs.from.value.trim();
    if (from) window.sessionStorage.setItem(SENDER_KEY, from);
    query = {
      to: inputs.to.value.trim(), from, status: inputs.status.value, tag: inputs.tag.value.trim(),
      since: isoOf(inputs.since.value), until: isoOf(inputs.until.value),
      limit: inputs.limit.value || PAGE_SIZE,
    };
    pager.load(true);
  });
  openForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = openInput.value.trim();
    if (id) showMessage(id, openInput);
  });

  const params = hashParams();
  if (params.get("to")) inputs.to.value = params.get("to");
  if (params.get("id")) {
    openInput.value = params.get("id");
    await showMessage(params.get("id"), openInput);
  }
}
