// Conversations: a sender's recent conversations (GET /api/conversations?from=), one thread in
// both directions (GET /api/conversations/{number}?from=, oldest first, paged), a reply box that
// sends through POST /api/messages, and the person's opt-out state with a button to change it
// (POST /api/optouts/check|add|remove). Inbound and outbound are told apart by a visible label,
// not only by colour. Every value from a person or the API is rendered as text through dom.el.
import { el, clear, formatTime, announce } from "../dom.js";
import { showError } from "../api.js";
import { continuationPager } from "../pager.js";

const SENDER_KEY = "sms-console.sender";
const LIST_SIZE = 50;
const THREAD_SIZE = 100;

function timeNode(iso) {
  return iso ? el("time", { datetime: iso }, formatTime(iso)) : "";
}

function directionLabel(direction) {
  return direction === "inbound" ? "Received" : "Sent";
}

function hashParams() {
  const hash = window.location.hash;
  const at = hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
}

export async function render(root, api) {
  const senderInput = el("input", { id: "conv-from", name: "from", type: "text", inputmode: "tel",
    autocomplete: "off", placeholder: "+18005550100", "aria-describedby": "conv-from-hint",
    value: window.sessionStorage.getItem(SENDER_KEY) || "" });
  const senderForm = el("form", { id: "conv-sender" },
    el("label", { for: "conv-from" }, "Our number (sender)"),
    senderInput,
    el("p", { class: "hint", id: "conv-from-hint" },
      "Kept for this browser session. Empty: the app's default sender."),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Show conversations")));

  const numberInput = el("input", { id: "conv-number", name: "number", type: "text",
    inputmode: "tel", autocomplete: "off", placeholder: "+14255550123" });
  const openForm = el("form", { id: "conv-open" },
    el("label", { for: "conv-number" }, "Open the conversation with"),
    numberInput,
    el("div", { class: "actions" }, el("button", { type: "submit", class: "secondary" }, "Open")));

  const listStatus = el("p", { id: "conv-list-status", role: "status", "aria-live": "polite" });
  const listError = el("div", { id: "conv-list-error", class: "error", role: "alert" });
  const list = el("ul", { id: "conv-list", class: "conversation-list", "aria-label": "Recent conversations" });
  const listMore = el("button", { type: "button", id: "conv-list-more", class: "secondary", hidden: true },
    "More conversations");
  const thread = el("section", { id: "conv-thread", "aria-labelledby": "conv-thread-heading", hidden: true });

  root.append(
    el("h1", { id: "page-heading", tabindex: "-1" }, "Conversations"),
    senderForm,
    el("h2", {}, "Recent conversations"),
    listError, listStatus, list,
    el("div", { class: "actions" }, listMore),
    openForm,
    thread);

  // The sender the list shows ("" for the app's default sender), and the one asked for last.
  let listFrom = null;
  let askedFrom = "";

  function sender() {
    return senderInput.value.trim();
  }

  function optOutBadge(optedOut) {
    return optedOut ? el("span", { class: "badge failed" }, " opted out") : null;
  }

  /** The list's badge of `number`, from an opt-out state just read for `from` from the API. */
  function showListOptOut(from, number, optedOut) {
    if (!from || from !== listFrom) return;
    list.querySelectorAll("button[data-number]").forEach((button) => {
      if (button.dataset.number !== number) return;
      const holder = button.querySelector(".optout-badge");
      clear(holder);
      if (optedOut) holder.append(optOutBadge(true));
    });
  }

  function listItem(conversation) {
    const button = el("button", { type: "button", class: "secondary conversation", "data-number": conversation.number },
      el("strong", {}, conversation.number),
      el("span", { class: "optout-badge" }, optOutBadge(conversation.optedOut)),
      el("br", {}),
      el("span", { class: "hint" },
        `${directionLabel(conversation.lastDirection)}: `),
      el("span", { class: "sample" }, conversation.lastMessage || ""),
      el("br", {}),
      timeNode(conversation.lastAt));
    button.addEventListener("click", () => openThread(conversation.number));
    return el("li", {}, button);
  }

  const listPager = continuationPager({
    fetchPage: (continuationToken) => {
      // More goes on with the list shown; a new list is the sender's in the field now.
      askedFrom = continuationToken ? listFrom : sender();
      return api.get("/conversations", { from: askedFrom, limit: LIST_SIZE, continuationToken });
    },
    itemsOf: (page) => page.conversations,
    reset: () => { clear(list); listFrom = askedFrom; },
    add: (conversations) => conversations.forEach((c) => list.append(listItem(c))),
    more: listMore,
    loading: () => {
      clear(listError);
      announce(listStatus, "Loading conversations…");
    },
    failed: (error) => {
      showError(listError, error);
      announce(listStatus, "The conversations could not be loaded.");
    },
    loaded: ({ shown, more }) => {
      announce(listStatus, shown === 0 ? "No conversations yet for this sender."
        : `${shown} conversation${shown === 1 ? "" : "s"}${more ? "; more are available" : ""}.`);
    },
  });

  function messageItem(message, extra) {
    const inbound = message.direction === "inbound";
    return el("li", { class: `message ${inbound ? "inbound" : "outbound"}`, "data-direction": message.direction,
      "data-id": message.id || "" },
    el("p", { class: "message-meta" },
      el("strong", {}, inbound ? `Received from ${message.from}` : `Sent to ${message.to}`),
      " · ", timeNode(message.at),
      extra ? el("span", {}, " · ", extra) : null),
    el("p", { class: "sample message-text" }, message.message));
  }

  async function openThread(number) {
    const from = sender();
    clear(thread);
    thread.hidden = false;
    const heading = el("h2", { id: "conv-thread-heading", tabindex: "-1" }, `Conversation with ${number}`);
    const threadStatus = el("p", { id: "conv-thread-status", role: "status", "aria-live": "polite" });
    const threadError = el("div", { id: "conv-thread-error", class: "error", role: "alert" });
    const optState = el("p", { id: "conv-optout-state", "aria-live": "polite" });
    const optButton = el("button", { type: "button", id: "conv-optout-toggle", class: "secondary", hidden: true });
    const optError = el("div", { id: "conv-optout-error", class: "error", role: "alert" });
    const messages = el("ol", { id: "conv-messages", class: "thread", "aria-label": `Messages with ${number}, oldest first` });
    const olderNote = el("p", { class: "hint" });
    const newer = el("button", { type: "button", id: "conv-newer", class: "secondary", hidden: true }, "Load newer messages");
    const replyText = el("textarea", { id: "conv-reply", name: "message", rows: 3, required: true,
      "aria-describedby": "conv-reply-status" });
    const replyButton = el("button", { type: "submit", id: "conv-reply-send" }, "Send reply");
    const replyStatus = el("p", { id: "conv-reply-status", role: "status", "aria-live": "polite" });
    const replyError = el("div", { id: "conv-reply-error", class: "error", role: "alert" });
    const replyForm = el("form", { id: "conv-reply-form" },
      el("label", { for: "conv-reply" }, `Reply to ${number}`),
      replyText,
      el("div", { class: "actions" }, replyButton),
      replyStatus, replyError);
    thread.append(heading, optState, el("div", { class: "actions" }, optButton), optError,
      threadError, threadStatus, olderNote, messages, el("div", { class: "actions" }, newer), replyForm);
    heading.focus();

    let optedOut = null;

    function showOptOut() {
      const who = from || "the default sender";
      if (optedOut === null) {
        optState.textContent = "Opt-out state unknown.";
        optButton.hidden = true;
        return;
      }
      optState.textContent = optedOut
        ? `${number} has opted out of ${who}: nothing can be sent to them.`
        : `${number} has not opted out of ${who}.`;
      optState.dataset.optedOut = String(optedOut);
      optButton.textContent = optedOut ? "Opt back in (remove the opt-out)" : "Opt out (add an opt-out)";
      optButton.hidden = false;
    }

    // The state shown (here and in the list) is always the one POST /api/optouts/check read
    // last: after a change, after a reply was blocked, after newer inbound messages (a STOP is
    // one). Only the latest call's answer is shown.
    let optSeq = 0;

    /** POST /api/optouts/<action> for this person; the entry of the answer, or null (shown). */
    async function optOutCall(action) {
      const answer = await api.post(`/optouts/${action}`, { from, recipients: [{ to: number }] });
      const entry = answer && Array.isArray(answer.value) ? answer.value[0] : null;
      if (!entry || entry.httpStatusCode >= 300) {
        optError.append(el("p", {}, (entry && entry.errorMessage) || "The opt-out service refused this number."));
        return null;
      }
      return entry;
    }

    async function optOut(action) {
      const mine = ++optSeq;
      clear(optError);
      if (!from) {
        optState.textContent = "Enter our number (sender) above to see and change the opt-out state.";
        optButton.hidden = true;
        return;
      }
      optButton.disabled = true;
      try {
        if (action === "check" || await optOutCall(action)) {
          const entry = await optOutCall("check");
          if (entry && mine === optSeq) {
            optedOut = Boolean(entry.isOptedOut);
            showListOptOut(from, number, optedOut);
          }
        }
      } catch (error) {
        showError(optError, error);
      } finally {
        if (mine === optSeq) optButton.disabled = false;
      }
      if (mine === optSeq) showOptOut();
    }

    optButton.addEventListener("click", () => optOut(optedOut ? "remove" : "add"));

    let newInbound = false;
    const threadPager = continuationPager({
      fetchPage: (continuationToken) => api.get(`/conversations/${encodeURIComponent(number)}`,
        { from, limit: THREAD_SIZE, continuationToken }),
      itemsOf: (page) => page.messages,
      reset: () => clear(messages),
      add: (entries) => {
        entries.forEach((m) => messages.append(messageItem(m)));
        newInbound = entries.some((m) => m.direction === "inbound");
      },
      more: newer,
      loading: () => {
        clear(threadError);
        announce(threadStatus, "Loading messages…");
      },
      failed: (error) => {
        showError(threadError, error);
        announce(threadStatus, "The messages could not be loaded.");
      },
      loaded: ({ shown, more, first }) => {
        announce(threadStatus, shown === 0 ? "No messages yet."
          : `Loaded ${shown} message${shown === 1 ? "" : "s"}, oldest first${more ? "; newer ones not loaded yet" : ""}.`);
        // Newer texts from the person may have opted them out (STOP) or back in (START).
        if (!first && newInbound) optOut("check");
      },
    });

    replyForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = replyText.value;
      if (!text.trim()) { replyText.focus(); return; }
      clear(replyError);
      replyButton.disabled = true;
      announce(replyStatus, "Sending…");
      try {
        const body = { to: number, message: text };
        if (from) body.from = from;
        const answer = await api.post("/messages", body);
        const sent = answer && Array.isArray(answer.messages) ? answer.messages[0] : null;
        const state = sent ? sent.status : "unknown";
        messages.append(messageItem({ id: sent && sent.id, direction: "outbound", from: from, to: number,
          message: text, at: new Date().toISOString() }, el("span", { class: `badge ${state}` }, state)));
        if (state === "blocked") {
          announce(replyStatus, `Not sent: ${number} has opted out.`);
          optOut("check");
        } else if (state === "rejected") {
          announce(replyStatus, `Not sent: ${(sent && sent.error) || "rejected"}.`);
        } else {
          announce(replyStatus, `Reply ${state}.`);
          replyText.value = "";
        }
      } catch (error) {
        showError(replyError, error);
        announce(replyStatus, "The reply was not sent.");
      } finally {
        replyButton.disabled = false;
      }
    });
    await Promise.all([threadPager.load(true), optOut("check")]);
  }

  senderForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const from = sender();
    if (from) window.sessionStorage.setItem(SENDER_KEY, from);
    else window.sessionStorage.removeItem(SENDER_KEY);
    clear(thread);
    thread.hidden = true;
    listPager.load(true);
  });
  openForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const number = numberInput.value.trim();
    if (number) openThread(number);
  });

  const params = hashParams();
  if (params.get("from")) senderInput.value = params.get("from");
  await listPager.load(true);
  if (params.get("number")) {
    numberInput.value = params.get("number");
    await openThread(params.get("number"));
  }
}
