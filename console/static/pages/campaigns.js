// The Campaigns page: the list with live counts, and the new-campaign flow of the README's
// walk-through (audience, template, schedule, quiet hours -> prepare -> review -> confirm ->
// progress; a large saved audience is prepared in the background first, its progress followed
// until the review). Every value from the API (names, templates, CSV cells, numbers, reasons) reaches
// the page through dom.js as text.
import { el, clear, formatTime, announce } from "../dom.js";
import { showError } from "../api.js";
import { followPreparation, preparationText } from "../preparation.js";

const TERMINAL = new Set(["completed", "canceled"]);
// Campaigns with no preview yet: a background preparation under way, or one that failed.
const UNPREPARED = new Set(["preparing", "failed"]);
const COUNT_NAMES = ["queued", "sent", "delivered", "failed", "blocked", "canceled", "expired"];
const PART_BYTES = 4 * 1024 * 1024; // an upload's part size as documented, if it names none
const RECIPIENT_NAMES = [
  ["total", "Total rows"], ["valid", "Will be sent"], ["invalid", "Invalid"],
  ["duplicates", "Duplicates"], ["optedOut", "Opted out"], ["deferred", "Deferred (quiet hours)"],
];

/** The template as nodes: {{placeholders}} in <mark class=placeholder>, each character listed in
 * `ucs2` (the `ucs2Characters` of POST /api/segments for this text) in <mark class=ucs2>,
 * everything else as text. Without `ucs2` (no answer yet) nothing is marked as forcing UCS-2. */
export function highlightTemplate(text, ucs2 = []) {
  const forcing = new Set(ucs2);
  const nodes = [];
  const parts = text.split(/(\{\{\s*[A-Za-z_][\w.-]*\s*\}\})/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      nodes.push(el("mark", { class: "placeholder", title: "placeholder" }, part));
      return;
    }
    let run = "";
    for (const ch of Array.from(part)) {
      if (!forcing.has(ch)) { run += ch; continue; }
      if (run) { nodes.push(run); run = ""; }
      nodes.push(el("mark", { class: "ucs2", title: "forces UCS-2" }, ch));
    }
    if (run) nodes.push(run);
  });
  return nodes;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), ms);
  };
}

function field(id, label, input, hint) {
  input.setAttribute("id", id);
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return el("div", { class: "field" }, el("label", { for: id }, label), input,
    hint ? el("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function radio(name, value, label, checked) {
  const id = `${name}-${value}`;
  return el("label", { class: "inline", for: id },
    el("input", { type: "radio", name, value, id, checked: !!checked }), label);
}

function stat(label, value, key) {
  return el("div", { "data-stat": key }, el("dt", {}, label), el("dd", {}, String(value ?? 0)));
}

/** A table of `rows` under `headers`; pass `body` (a tbody) to add rows to it later. */
function table(caption, headers, rows, body = null) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("caption", { class: "visually-hidden" }, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : null }, h.label || h)))),
    body || el("tbody", {}, rows)));
}

export async function render(root, api) {
  const live = el("p", { id: "campaigns-live", role: "status", "aria-live": "polite", class: "hint" });
  const errorBox = el("div", { id: "campaigns-error", class: "error", role: "alert" });
  const view = el("div", { id: "campaigns-view" });
  root.append(el("h1", { id: "page-heading", tabindex: "-1" }, "Campaigns"), live, errorBox, view);

  // Stop any poller when the user leaves the page (the router replaces `root`).
  let poller = null;
  const stopPolling = () => { if (poller) window.clearTimeout(poller); poller = null; };

  function show(nodes, focusId) {
    stopPolling();
    clear(errorBox);
    clear(view);
    view.append(...nodes);
    const target = focusId && document.getElementById(focusId);
    if (target) target.focus();
  }

  function fail(error) {
    showError(errorBox, error);
  }

  // ---- the list ----------------------------------------------------------------------------
  async function showList() {
    const newButton = el("button", { type: "button", id: "new-campaign" }, "New campaign");
    const refresh = el("button", { type: "button", class: "secondary", id: "refresh-campaigns" }, "Refresh");
    const holder = el("div", { id: "campaign-list" }, el("p", { class: "hint" }, "Loading campaigns…"));
    show([el("div", { class: "actions" }, newButton, refresh), holder]);
    newButton.addEventListener("click", () => showNew().catch(fail));
    refresh.addEventListener("click", () => showList().catch(fail));
    const page = await api.get("/campaigns", { limit: 50 });
    clear(holder);
    if (!page.campaigns.length) {
      holder.append(el("p", {}, "No campaigns yet. Start with New campaign."));
      announce(live, "No campaigns yet");
      return;
    }
    const body = el("tbody", {});
    const more = el("button", { type: "button", class: "secondary", id: "more-campaigns" }, "More campaigns");
    holder.append(table("Campaigns", ["Name", "Status", { label: "Recipients", num: true }, "Tag", "Next run", "Created"], [], body), more);
    // The API lists the oldest first, a page at a time: `next` continues after the last one.
    let next = null;
    const append = (p) => {
      body.append(...p.campaigns.map(campaignRow));
      next = p.next;
      more.hidden = !next;
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        const p = await api.get("/campaigns", { limit: 50, after: next });
        append(p);
        announce(live, `${p.campaigns.length} more campaign(s)`);
      } catch (error) {
        fail(error);
      } finally {
        more.disabled = false;
      }
    });
    append(page);
    announce(live, `${page.campaigns.length} campaign(s)`);
  }

  function campaignRow(c) {
    const open = el("button", { type: "button", class: "secondary", "data-id": c.id }, c.name);
    // A prepared campaign opens on its review (a new confirmation token: the one from its
    // preparation may have been in another session); one preparing in the background (or that
    // failed to) on its preparation; every other one on its progress.
    open.addEventListener("click", () => (c.status === "prepared" ? openReview(c.id)
      : UNPREPARED.has(c.status) ? openPreparation(c.id) : showProgress(c.id)).catch(fail));
    const r = c.recipients || {};
    return el("tr", { "data-campaign": c.id },
      el("td", {}, open),
      el("td", {}, el("span", { class: `badge ${c.status}` }, c.status)),
      el("td", { class: "num" }, UNPREPARED.has(c.status) ? "—" : String(r.valid ?? "")),
      el("td", {}, c.tag || ""),
      el("td", {}, formatTime(c.nextRunAt) || "—"),
      el("td", {}, formatTime(c.createdAt)));
  }

  // ---- new campaign ------------------------------------------------------------------------
  async function showNew() {
    const [audiences, templates] = await Promise.all([
      api.get("/audiences").then((a) => a.audiences).catch(() => []),
      api.get("/templates").then((t) => t.templates).catch(() => []),
    ]);
    // The server validates (its 400 names each field); the browser's own bubbles would hide that.
    const form = el("form", { id: "new-campaign-form", novalidate: true });
    const formError = el("div", { id: "prepare-error", class: "error", role: "alert" });

    // Basics
    const name = el("input", { type: "text", name: "name", required: true, maxlength: "200", autocomplete: "off" });
    const from = el("input", { type: "text", name: "from", autocomplete: "off", placeholder: "+18005550100" });
    const tag = el("input", { type: "text", name: "tag", maxlength: "256", autocomplete: "off" });

    // Audience
    const audienceSelect = el("select", { name: "audienceId" },
      el("option", { value: "" }, "Choose a saved audience"),
      // A failed import holds nothing to send to; one still importing says so (it prepares
      // nothing until it is ready).
      audiences.filter((a) => a.status !== "failed").map((a) => el("option", { value: a.id },
        a.status === "importing" ? `${a.name} (importing, ${a.size} members so far)` : `${a.name} (${a.size} members)`)));
    const filter = el("input", { type: "text", name: "filter", autocomplete: "off", spellcheck: "false",
      placeholder: "plan = 'pro' and city != 'Portland'" });
    const matchCount = el("p", { id: "match-count", class: "counter", role: "status", "aria-live": "polite" });
    const csvFile = el("input", { type: "file", name: "csv", accept: ".csv,text/csv" });
    const csvName = el("input", { type: "text", name: "csvName", autocomplete: "off", maxlength: "200" });
    const uploadButton = el("button", { type: "button", id: "upload-csv", class: "secondary" }, "Upload audience");
    const uploadResult = el("div", { id: "upload-result", role: "status", "aria-live": "polite" });
    const pasted = el("textarea", { name: "numbers", rows: "4", spellcheck: "false" });

    const savedPanel = el("div", { id: "audience-saved" },
      field("audience-select", "Saved audience", audienceSelect),
      field("audience-filter", "Filter (optional)", filter,
        "A rule over the audience's columns, e.g. plan = 'pro'. See docs/filter-language.md."),
      matchCount);
    const csvPanel = el("div", { id: "audience-csv", hidden: true },
      field("csv-file", "CSV file", csvFile, "A header line with a phone column (to, phone, mobile…); other columns are template variables."),
      field("csv-name", "Audience name", csvName),
      el("div", { class: "actions" }, uploadButton), uploadResult);
    const pastePanel = el("div", { id: "audience-paste", hidden: true },
      field("pasted-numbers", "Phone numbers", pasted, "One per line (or separated by commas), in E.164: +14255550123."));
    const audienceFieldset = el("fieldset", { id: "audience-fieldset" }, el("legend", {}, "Audience"),
      el("div", { role: "radiogroup", "aria-label": "Audience source" },
        radio("audience-source", "saved", "Saved audience", true),
        radio("audience-source", "csv", "Upload a CSV"),
        radio("audience-source", "paste", "Paste numbers")),
      savedPanel, csvPanel, pastePanel);

    // Template
    const templateSelect = el("select", { name: "templateId" },
      el("option", { value: "" }, "Choose a saved template"),
      templates.map((t) => el("option", { value: t.id }, t.name)));
    const templateText = el("textarea", { name: "template", rows: "4", maxlength: "2048" });
    const preview = el("div", { id: "template-preview", class: "template-preview", "aria-label": "Template preview" });
    const counter = el("p", { id: "segment-counter", class: "counter", role: "status", "aria-live": "polite" });
    const templateFieldset = el("fieldset", { id: "template-fieldset" }, el("legend", {}, "Template"),
      el("div", { role: "radiogroup", "aria-label": "Template source" },
        radio("template-source", "new", "Write a new text", true),
        radio("template-source", "saved", "Saved template")),
      el("div", { id: "template-saved", hidden: true }, field("template-select", "Saved template", templateSelect)),
      el("div", { id: "template-new" }, field("template-text", "Text", templateText,
        "Use {{column}} for a value from the audience, e.g. Hi {{first_name}}.")),
      el("h3", {}, "Preview"), preview, counter);

    // Schedule and quiet hours
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const sendAt = el("input", { type: "datetime-local", name: "sendAt" });
    const cron = el("input", { type: "text", name: "cron", autocomplete: "off", spellcheck: "false", placeholder: "0 9 * * 1" });
    const timezone = el("input", { type: "text", name: "timezone", autocomplete: "off", value: zone });
    const scheduleFieldset = el("fieldset", { id: "schedule-fieldset" }, el("legend", {}, "Schedule"),
      el("div", { role: "radiogroup", "aria-label": "When" },
        radio("schedule", "now", "Send now", true),
        radio("schedule", "at", "At a time"),
        radio("schedule", "cron", "Recurring (cron)")),
      el("div", { id: "schedule-at-panel", hidden: true }, field("send-at", "Send at (your local time)", sendAt)),
      el("div", { id: "schedule-cron-panel", hidden: true },
        field("cron", "Cron (minute hour day month weekday)", cron, "0 9 * * 1 is every Monday at 09:00."),
        field("timezone", "Time zone", timezone, "An IANA zone, e.g. Europe/Amsterdam.")));
    const quiet = el("input", { type: "checkbox", name: "quiet", id: "quiet-enabled" });
    const quietStart = el("input", { type: "time", name: "quietStart", value: "21:00" });
    const quietEnd = el("input", { type: "time", name: "quietEnd", value: "08:00" });
    const quietFieldset = el("fieldset", { id: "quiet-fieldset" }, el("legend", {}, "Quiet hours"),
      el("label", { class: "inline", for: "quiet-enabled" }, quiet, "Hold messages during quiet hours (each recipient's local time)"),
      el("div", { id: "quiet-times", hidden: true },
        field("quiet-start", "Quiet from", quietStart), field("quiet-end", "Quiet until", quietEnd)));

    const prepare = el("button", { type: "submit", id: "prepare" }, "Prepare and review");
    const back = el("button", { type: "button", class: "secondary", id: "back-to-list" }, "Back to the list");
    form.append(el("h2", { id: "new-heading", tabindex: "-1" }, "New campaign"),
      field("campaign-name", "Campaign name", name),
      field("campaign-from", "From (optional)", from, "Our number; empty uses SMS_DEFAULT_FROM."),
      field("campaign-tag", "Tag (optional)", tag),
      audienceFieldset, templateFieldset, scheduleFieldset, quietFieldset, formError,
      el("div", { class: "actions" }, prepare, back));
    show([form], "new-heading");
    back.addEventListener("click", () => showList().catch(fail));

    const choice = (group) => form.querySelector(`input[name="${group}"]:checked`).value;
    const toggle = (group, panels) => {
      form.querySelectorAll(`input[name="${group}"]`).forEach((input) => input.addEventListener("change", () => {
        for (const [value, id] of Object.entries(panels)) document.getElementById(id).hidden = choice(group) !== value;
      }));
    };
    toggle("audience-source", { saved: "audience-saved", csv: "audience-csv", paste: "audience-paste" });
    toggle("template-source", { saved: "template-saved", new: "template-new" });
    toggle("schedule", { at: "schedule-at-panel", cron: "schedule-cron-panel" });
    quiet.addEventListener("change", () => { document.getElementById("quiet-times").hidden = !quiet.checked; });

    // The live match count: GET /api/audiences/{id}/count?filter= (if this API has it).
    let countSeq = 0;
    const updateCount = debounce(async () => {
      const id = audienceSelect.value;
      const seq = ++countSeq;
      if (!id) { matchCount.textContent = ""; return; }
      try {
        const answer = await api.get(`/audiences/${encodeURIComponent(id)}/count`, { filter: filter.value.trim() });
        if (seq !== countSeq) return;
        const n = answer.matching ?? answer.count;
        matchCount.textContent = answer.members !== undefined
          ? `${n} of ${answer.members} member(s) match` : `${n} member(s) match`;
      } catch (error) {
        if (seq !== countSeq) return;
        if (error.status === 404) {
          matchCount.textContent = "That audience no longer exists.";
        } else {
          clear(matchCount);
          showError(matchCount, error);
        }
      }
    }, 250);
    audienceSelect.addEventListener("change", updateCount);
    filter.addEventListener("input", updateCount);

    // CSV upload. Each upload starts with POST /api/audiences/uploads, whose `partBytes` says how
    // large a part may be. A file up to that size goes whole as one text/csv POST
    // /api/audiences?name= (its 400 names the bad line at once). A larger one is sliced into parts
    // of `partBytes`, each PUT in order (a failed part is sent again, up to 3 times), then
    // POST /api/audiences {name, uploadId, parts} starts its import, followed every second with
    // GET /api/audiences/{id} until it is ready (or failed, naming the line).
    const progressLabel = el("p", { id: "upload-progress-label" }, "");
    const progressBar = el("progress", { id: "upload-progress", max: "1", value: "0",
      "aria-labelledby": "upload-progress-label" });
    const progressPanel = el("div", { id: "upload-progress-panel", hidden: true }, progressLabel, progressBar);
    uploadResult.before(progressPanel);
    const setProgress = (text, value, max) => {
      progressPanel.hidden = false;
      progressLabel.textContent = text;
      progressBar.setAttribute("max", String(Math.max(max, 1)));
      progressBar.setAttribute("value", String(Math.min(value, Math.max(max, 1))));
    };
    // The pause between polls, on the page's poller: leaving the page (or this form) stops it.
    const pause = (ms) => new Promise((resolve) => {
      poller = window.setTimeout(() => { poller = null; resolve(); }, ms);
    });
    const left = () => !form.isConnected;

    const uploaded = (saved) => {
      const text = `Saved audience “${saved.name}”: ${saved.size} member(s), columns ${saved.columns.join(", ") || "(none)"}. It is selected below.`;
      audienceSelect.append(el("option", { value: saved.id }, `${saved.name} (${saved.size} members)`));
      audienceSelect.value = saved.id;
      uploadResult.append(el("p", { class: "ok", id: "upload-ok" }, text));
      form.querySelector('input[name="audience-source"][value="saved"]').click();
      // The CSV panel (and the button that had focus) is hidden now: say so on the page's live
      // region, and go on from the audience it selected.
      announce(live, text);
      audienceSelect.focus();
      updateCount();
    };
    const uploadFailed = (show) => {
      const box = el("div", { class: "error", id: "upload-error", role: "alert" });
      uploadResult.append(box);
      show(box);
    };

    // A part (or the import's start) that failed on the way (no answer, 408, 429, 5xx) is sent
    // again, up to 3 times; any other answer is final. `onRetry(n)` before the n-th retry.
    const RETRIES = 3;
    const transient = (error) => error.status === 0 || error.status === 408 || error.status === 429 || error.status >= 500;
    async function retried(call, onRetry) {
      for (let attempt = 0; ; attempt += 1) {
        try {
          return await call();
        } catch (error) {
          if (attempt >= RETRIES || !transient(error) || left()) throw error;
          onRetry(attempt + 1);
          await new Promise((resolve) => { window.setTimeout(resolve, 500 * (attempt + 1)); });
          if (left()) throw error;
        }
      }
    }

    const partBytesOf = (upload) => (Number.isInteger(upload.partBytes) && upload.partBytes > 0
      ? upload.partBytes : PART_BYTES);
    const importing = (a) => {
      const p = a.progress || {};
      setProgress(`Importing: ${a.size ?? 0} members so far (${p.bytesRead ?? 0} of ${p.totalBytes ?? 0} bytes)`,
        p.bytesRead || 0, p.totalBytes || 0);
    };

    // The parts upload of `file`; the audience when it is ready, or null if the user left.
    async function uploadInParts(file, audienceName, upload) {
      const size = partBytesOf(upload);
      const count = Math.ceil(file.size / size);
      const id = encodeURIComponent(upload.id);
      announce(live, `Sending “${audienceName}” in ${count} parts…`);
      for (let n = 0; n < count; n += 1) {
        if (left()) return null;
        const sending = `Sending part ${n + 1} of ${count}`;
        setProgress(sending, n, count);
        await retried(
          () => api.put(`/audiences/uploads/${id}/parts/${n}`, file.slice(n * size, (n + 1) * size),
            { contentType: "application/octet-stream" }),
          (retry) => setProgress(`${sending} (retry ${retry} of ${RETRIES})`, n, count));
      }
      if (left()) return null;
      setProgress(`Sent ${count} of ${count} parts; starting the import…`, count, count);
      let a = await retried(() => api.post("/audiences", { name: audienceName, uploadId: upload.id, parts: count }),
        () => {});
      announce(live, `Importing “${audienceName}”…`);
      while (a.status === "importing") {
        importing(a);
        await pause(1000);
        if (left()) return null;
        try {
          a = await api.get(`/audiences/${encodeURIComponent(a.id)}`);
        } catch (error) {
          if (error.status === 404 || left()) throw error;
          // Not answered this time: say so and look again a little later.
          progressLabel.textContent = `Importing: not checked just now (${error.message}); trying again…`;
          await pause(4000);
          if (left()) return null;
        }
      }
      if (a.status === "ready") {
        const p = a.progress || {};
        setProgress(`Imported: ${a.size} members (${p.bytesRead ?? 0} of ${p.totalBytes ?? 0} bytes)`,
          p.bytesRead || 1, p.totalBytes || 1);
      }
      return a;
    }

    uploadButton.addEventListener("click", async () => {
      clear(uploadResult);
      progressPanel.hidden = true;
      const file = csvFile.files && csvFile.files[0];
      if (!file) { uploadResult.append(el("p", { class: "error" }, "Choose a CSV file first.")); csvFile.focus(); return; }
      const audienceName = csvName.value.trim() || file.name.replace(/\.csv$/i, "");
      uploadButton.disabled = true;
      try {
        let upload = null;
        try {
          upload = await api.post("/audiences/uploads");
        } catch (error) {
          // Without an upload (an API without parts, or not answering) a file of up to the
          // documented part size still goes whole.
          if (file.size > PART_BYTES) throw error;
        }
        let saved;
        if (!upload || file.size <= partBytesOf(upload)) {
          const text = await file.text();
          saved = await api.post(`/audiences?name=${encodeURIComponent(audienceName)}`, text, { contentType: "text/csv" });
        } else {
          saved = await uploadInParts(file, audienceName, upload);
          if (!saved) return;
        }
        if (saved.status === "failed") {
          const e = saved.error || {};
          progressPanel.hidden = true;
          uploadFailed((box) => box.append(
            el("p", { class: "problem-title" }, `“${saved.name}” could not be imported`),
            el("p", { class: "problem-detail" }, `line ${e.line ?? 1}: ${e.detail || "the file was refused"}`),
            el("p", { class: "hint" }, "Nothing of the file was saved: fix that line and upload it again.")));
          announce(live, `The audience “${saved.name}” could not be imported: line ${e.line ?? 1}`);
          return;
        }
        uploaded(saved);
      } catch (error) {
        if (left()) return;
        uploadFailed((box) => showError(box, error));
      } finally {
        uploadButton.disabled = false;
      }
    });

    // Template preview and the segment counter, both from POST /api/segments (the server's
    // rules, the ones a send applies). Each edit takes a sequence number: only the answer for
    // the latest text is shown, so an earlier draft's answer arriving late changes nothing.
    let segSeq = 0;
    const currentText = () => {
      if (choice("template-source") === "new") return templateText.value;
      const t = templates.find((x) => x.id === templateSelect.value);
      return t ? t.text : "";
    };
    const describe = (s) => {
      const ucs2 = s.ucs2Characters || [];
      return `${s.segments} segment(s), ${s.encoding}, ${s.characters} character(s)`
        + (ucs2.length ? `; forcing UCS-2: ${ucs2.join(" ")}` : "");
    };
    const failure = (error) => {
      const problem = (error && error.problem) || {};
      const title = problem.title || (error && error.message) || "Error";
      return `Segments not counted: ${title}${error && error.status ? ` (${error.status})` : ""}`
        + (problem.detail && problem.detail !== title ? `. ${problem.detail}` : "");
    };
    const countSegments = debounce(async (text, seq) => {
      if (seq !== segSeq) return;
      try {
        const s = await api.post("/segments", { message: text });
        if (seq !== segSeq) return;
        clear(preview);
        preview.append(...highlightTemplate(text, s.ucs2Characters || []));
        counter.textContent = describe(s);
      } catch (error) {
        if (seq !== segSeq) return;
        counter.textContent = failure(error);
      }
    }, 300);
    const updateTemplate = () => {
      const text = currentText();
      const seq = ++segSeq;
      clear(preview);
      preview.append(...highlightTemplate(text));
      if (!text) { counter.textContent = ""; return; }
      counter.textContent = "Counting segments…";
      countSegments(text, seq);
    };
    templateText.addEventListener("input", updateTemplate);
    templateSelect.addEventListener("change", updateTemplate);
    form.querySelectorAll('input[name="template-source"]').forEach((i) => i.addEventListener("change", updateTemplate));

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(formError);
      const body = { name: name.value.trim() };
      if (from.value.trim()) body.from = from.value.trim();
      if (tag.value.trim()) body.tag = tag.value.trim();
      const source = choice("audience-source");
      if (source === "paste") {
        const numbers = pasted.value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
        body.audience = { recipients: numbers.map((to) => ({ to })) };
      } else {
        if (!audienceSelect.value) {
          formError.append(el("p", {}, source === "csv" ? "Upload the CSV first (Upload audience)." : "Choose a saved audience."));
          (source === "csv" ? uploadButton : audienceSelect).focus();
          return;
        }
        body.audience = { audienceId: audienceSelect.value };
        if (filter.value.trim()) body.audience.filter = filter.value.trim();
      }
      if (choice("template-source") === "saved") body.templateId = templateSelect.value;
      else body.template = templateText.value;
      const when = choice("schedule");
      if (when === "at") {
        const at = new Date(sendAt.value);
        if (Number.isNaN(at.getTime())) { formError.append(el("p", {}, "Choose the time to send at.")); sendAt.focus(); return; }
        body.schedule = { sendAt: at.toISOString() };
      } else if (when === "cron") {
        body.schedule = { cron: cron.value.trim(), timezone: timezone.value.trim() };
      }
      if (quiet.checked) body.quietHours = { start: quietStart.value, end: quietEnd.value };
      prepare.disabled = true;
      announce(live, "Preparing the campaign…");
      try {
        const prepared = await api.post("/campaigns", body);
        // 201: prepared, its review now. 202 (a saved audience of more than 10,000 members):
        // `preparing`, its review once the background jobs are done, with this token.
        if (prepared.status === "preparing") showPreparation(prepared, prepared.confirmationToken);
        else showReview(prepared);
      } catch (error) {
        showError(formError, error);
        announce(live, "The campaign could not be prepared");
        formError.focus();
      } finally {
        prepare.disabled = false;
      }
    });
    updateTemplate();
  }

  // ---- review ------------------------------------------------------------------------------
  function previewNodes(p) {
    const r = p.recipients || {};
    const nodes = [el("h3", {}, "Recipients"),
      el("dl", { class: "stats", id: "review-counts" }, RECIPIENT_NAMES.map(([k, label]) => stat(label, r[k], k)))];
    if ((p.invalidRows || []).length) {
      nodes.push(el("h3", {}, "Invalid rows"), table("Invalid rows",
        ["Where", "Number", "Why"],
        p.invalidRows.map((row) => el("tr", {},
          el("td", {}, row.line !== undefined ? `line ${row.line}` : `row ${row.index + 1}`), el("td", {}, row.to), el("td", {}, row.reason)))));
      if (p.invalidRowsTruncated) nodes.push(el("p", { class: "hint" }, "Only the first 1,000 invalid rows are listed."));
    }
    const seg = p.segments || {};
    nodes.push(el("h3", {}, "Message"),
      el("dl", { class: "stats", id: "review-segments" },
        stat("Encoding", p.encoding || "—", "encoding"),
        stat("Segments each (min–max)", `${seg.min ?? 0}–${seg.max ?? 0}`, "segments"),
        stat("Segments in all", seg.total, "segmentsTotal")));
    if ((p.ucs2Characters || []).length) {
      nodes.push(el("p", { id: "review-ucs2" }, "Characters forcing UCS-2: ",
        p.ucs2Characters.map((c) => el("mark", { class: "ucs2" }, c))));
    }
    if ((p.samples || []).length) {
      nodes.push(el("h3", {}, "Samples"), el("ul", { id: "review-samples" },
        p.samples.map((s) => el("li", {}, el("strong", {}, s.to), ": ",
          el("span", { class: "sample" }, s.message), ` (${s.segments} segment(s), ${s.encoding})`))));
    }
    const e = p.estimate;
    if (e) {
      nodes.push(el("h3", {}, "Estimate"), el("p", { id: "review-estimate" },
        `About ${e.durationSeconds} s at ${e.ratePerMinute} messages a minute: from ${formatTime(e.startsAt)} to ${formatTime(e.finishesAt)}`
        + (e.deferredUntil ? `; deferred recipients wait until ${formatTime(e.deferredUntil)}.` : ".")));
    }
    return nodes;
  }

  async function openReview(id) {
    let reviewed;
    try {
      reviewed = await api.post(`/campaigns/${encodeURIComponent(id)}/review`);
    } catch (error) {
      // Sent or canceled since the list was read: show where it is now.
      if (error.status === 409) return showProgress(id);
      throw error;
    }
    showReview(reviewed);
  }

  function showReview(c) {
    const valid = (c.preview && c.preview.recipients && c.preview.recipients.valid) || 0;
    const send = el("button", { type: "button", id: "send-campaign" }, "Send…");
    const cancel = el("button", { type: "button", class: "danger", id: "cancel-campaign" }, "Cancel campaign");
    const back = el("button", { type: "button", class: "secondary", id: "back-to-list" }, "Back to the list");
    const confirmDialog = el("dialog", { id: "confirm-send", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      el("h2", { id: "confirm-title" }, "Send this campaign?"),
      el("p", { id: "confirm-text" }, c.schedule
        ? `“${c.name}” will be sent to ${valid} recipient(s) on its schedule.`
        : `“${c.name}” will be sent now to ${valid} recipient(s). This cannot be undone.`),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "confirm-send-yes" }, "Yes, send"),
        el("button", { type: "button", class: "secondary", id: "confirm-send-no" }, "Not yet")));
    show([el("h2", { id: "review-heading", tabindex: "-1" }, `Review: ${c.name}`),
      el("p", {}, "Nothing has been sent. Check the counts, then Send."),
      ...previewNodes(c.preview || {}),
      el("div", { class: "actions" }, send, cancel, back), confirmDialog], "review-heading");
    announce(live, `Prepared: ${valid} recipient(s) will be sent`);
    send.disabled = !c.confirmationToken || valid === 0;
    send.addEventListener("click", () => confirmDialog.showModal());
    confirmDialog.querySelector("#confirm-send-no").addEventListener("click", () => { confirmDialog.close(); send.focus(); });
    confirmDialog.querySelector("#confirm-send-yes").addEventListener("click", async () => {
      confirmDialog.close();
      send.disabled = true;
      try {
        await api.post(`/campaigns/${encodeURIComponent(c.id)}/send`, { confirmationToken: c.confirmationToken });
        await showProgress(c.id);
      } catch (error) {
        send.disabled = false;
        fail(error);
      }
    });
    cancel.addEventListener("click", () => cancelCampaign(c.id));
    back.addEventListener("click", () => showList().catch(fail));
  }

  async function cancelCampaign(id) {
    try {
      await api.post(`/campaigns/${encodeURIComponent(id)}/cancel`, {});
      await showProgress(id);
      announce(live, "Campaign canceled");
    } catch (error) {
      fail(error);
    }
  }

  // ---- preparation in the background ---------------------------------------------------------
  async function openPreparation(id) {
    showPreparation(await api.get(`/campaigns/${encodeURIComponent(id)}`));
  }

  // A campaign `preparing` (or `failed`): the rows read and the counts so far, followed every
  // second until it is prepared, then its review: with `token` (the 202's confirmationToken)
  // as it is, without (opened from the list) through POST .../review for a new token, as a
  // prepared campaign from the list. A failed one shows why, and the way back.
  function showPreparation(c, token = null) {
    const heading = el("h2", { id: "preparation-heading", tabindex: "-1" }, `Preparing: ${c.name}`);
    const badge = el("span", { id: "preparation-status", class: "badge" }, "");
    const label = el("p", { id: "preparation-label" }, "");
    const bar = el("progress", { id: "preparation-progress", max: "1", value: "0", "aria-labelledby": "preparation-label" });
    const counts = el("dl", { class: "stats", id: "preparation-counts" });
    const problem = el("div", { id: "preparation-error", class: "error", role: "alert", tabindex: "-1" });
    const cancel = el("button", { type: "button", class: "danger", id: "cancel-campaign" }, "Cancel campaign");
    const again = el("button", { type: "button", id: "new-campaign", hidden: true }, "New campaign");
    const back = el("button", { type: "button", class: "secondary", id: "back-to-list" }, "Back to the list");
    const panel = el("div", { id: "preparation-panel" }, heading,
      el("p", {}, "Status: ", badge), label, bar,
      el("p", { class: "hint", id: "preparation-hint" },
        "Nothing has been sent. The audience is large: it is prepared in the background, and its review follows here when it is done. Duplicates and opt-outs are counted once every row is read."),
      el("h3", {}, "Counts so far"), counts, problem,
      el("div", { class: "actions" }, again, cancel, back));
    show([panel], "preparation-heading");
    cancel.addEventListener("click", () => cancelCampaign(c.id));
    again.addEventListener("click", () => showNew().catch(fail));
    back.addEventListener("click", () => showList().catch(fail));

    const update = (now) => {
      const p = now.preparation || {};
      badge.textContent = now.status;
      badge.setAttribute("class", `badge ${now.status}`);
      label.textContent = preparationText(p);
      bar.setAttribute("max", String(Math.max(p.rowsTotal || 0, 1)));
      bar.setAttribute("value", String(Math.min(p.rowsRead || 0, Math.max(p.rowsTotal || 0, 1))));
      clear(counts);
      counts.append(...RECIPIENT_NAMES.map(([k, name]) => stat(name, (p.counts || {})[k], k)));
    };
    const failedNow = (now) => {
      update(now);
      heading.textContent = `Not prepared: ${now.name}`;
      document.getElementById("preparation-hint").textContent = "Nothing has been sent.";
      clear(problem);
      problem.append(el("p", { class: "problem-title" }, "The campaign could not be prepared"),
        el("p", { class: "problem-detail" }, (now.preparation || {}).error || "The preparation failed."),
        el("p", { class: "hint" }, "Start a new campaign with another audience or filter."));
      cancel.hidden = true;
      again.hidden = false;
      problem.focus();
      announce(live, `The campaign could not be prepared: ${(now.preparation || {}).error || "failed"}`);
    };
    const settled = (now) => {
      if (now.status === "prepared") {
        if (token) showReview({ ...now, confirmationToken: token });
        else openReview(now.id).catch(fail);
      } else if (now.status === "failed") {
        failedNow(now);
      } else {
        showProgress(now.id).catch(fail); // canceled (or sent) meanwhile
      }
    };

    update(c);
    if (c.status !== "preparing") { settled(c); return; }
    announce(live, `Preparing “${c.name}” in the background…`);
    followPreparation({
      fetchCampaign: () => api.get(`/campaigns/${encodeURIComponent(c.id)}`),
      alive: () => panel.isConnected,
      wait: (fn, ms) => { poller = window.setTimeout(() => { poller = null; fn(); }, ms); },
      update: (now) => { clear(errorBox); update(now); },
      settled,
      failed: fail,
    });
  }

  // ---- progress ----------------------------------------------------------------------------
  async function showProgress(id) {
    const heading = el("h2", { id: "progress-heading", tabindex: "-1" }, "Campaign");
    const badge = el("span", { id: "campaign-status", class: "badge" }, "");
    const bar = el("progress", { id: "campaign-progress", max: "1", value: "0", "aria-labelledby": "progress-label" });
    const label = el("p", { id: "progress-label" }, "");
    const counts = el("dl", { class: "stats", id: "campaign-counts" });
    const runs = el("div", { id: "campaign-runs" });
    const cancel = el("button", { type: "button", class: "danger", id: "cancel-campaign" }, "Cancel campaign");
    const back = el("button", { type: "button", class: "secondary", id: "back-to-list" }, "Back to the list");
    const details = el("details", { id: "campaign-preview" }, el("summary", {}, "The preview this campaign was prepared with"));
    show([heading, el("p", {}, "Status: ", badge), label, bar, counts,
      el("div", { class: "actions" }, cancel, back), runs, details], "progress-heading");
    cancel.addEventListener("click", () => cancelCampaign(id));
    back.addEventListener("click", () => showList().catch(fail));
    let lastStatus = null;
    let first = true;
    const tick = async () => {
      poller = null;
      if (!root.isConnected) return;
      let c;
      try {
        c = await api.get(`/campaigns/${encodeURIComponent(id)}`);
      } catch (error) {
        fail(error);
        poller = window.setTimeout(tick, 5000);
        return;
      }
      if (!root.isConnected || !document.getElementById("campaign-counts")) return;
      // Not prepared yet (or never): its preparation, not its runs.
      if (UNPREPARED.has(c.status)) { showPreparation(c); return; }
      heading.textContent = c.name;
      badge.textContent = c.status;
      badge.setAttribute("class", `badge ${c.status}`);
      const total = (c.preview && c.preview.recipients && c.preview.recipients.valid) || 0;
      const n = c.counts || {};
      const done = ["sent", "delivered", "failed", "blocked", "canceled", "expired"].reduce((s, k) => s + (n[k] || 0), 0);
      const perRun = c.runs && c.runs.length ? total * c.runs.length : total;
      bar.setAttribute("max", String(Math.max(perRun, 1)));
      bar.setAttribute("value", String(Math.min(done, Math.max(perRun, 1))));
      label.textContent = `${done} of ${perRun} message(s) handed over${c.nextRunAt ? `; next run ${formatTime(c.nextRunAt)}` : ""}`;
      clear(counts);
      counts.append(...COUNT_NAMES.map((k) => stat(k[0].toUpperCase() + k.slice(1), n[k], k)));
      clear(runs);
      if ((c.runs || []).length) {
        runs.append(el("h3", {}, "Runs"), table("Runs", ["Run", "Status", "Started", { label: "Sent", num: true }, { label: "Delivered", num: true }, { label: "Failed", num: true }],
          c.runs.map((r) => el("tr", {}, el("td", {}, r.id), el("td", {}, r.status), el("td", {}, formatTime(r.startedAt)),
            el("td", { class: "num" }, String((r.counts || {}).sent ?? 0)), el("td", { class: "num" }, String((r.counts || {}).delivered ?? 0)),
            el("td", { class: "num" }, String((r.counts || {}).failed ?? 0))))));
      }
      if (first && c.preview) { details.append(...previewNodes(c.preview)); first = false; }
      cancel.disabled = TERMINAL.has(c.status);
      if (c.status !== lastStatus) { announce(live, `Campaign ${c.status}`); lastStatus = c.status; }
      // Until the run completes, follow it every second; a scheduled campaign more slowly.
      // Delivery reports keep arriving after `completed`, so follow the counts a little longer.
      if (!TERMINAL.has(c.status)) poller = window.setTimeout(tick, c.status === "sending" ? 1000 : 5000);
      else if ((n.sent || 0) > 0) poller = window.setTimeout(tick, 3000);
    };
    await tick();
  }

  await showList();
}
