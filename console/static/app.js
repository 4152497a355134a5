// The console's shell: a hash router over the pages. PAGE CONTRACT (console/README.md): each page
// is pages/<name>.js exporting `async function render(root, api)`; `root` is an empty <section>
// the page fills, `api` is api.js's object. A page that does not exist yet shows "not built yet".
import { api, showError, storedKey, askForKey } from "./api.js";
import { el, clear } from "./dom.js";

export const PAGES = [
  { name: "campaigns", label: "Campaigns" },
  { name: "messages", label: "Messages" },
  { name: "conversations", label: "Conversations" },
  { name: "optouts", label: "Opt-outs" },
  { name: "analytics", label: "Analytics" },
];
const DEFAULT_PAGE = "campaigns";

const main = document.getElementById("main");
const status = document.getElementById("page-status");
let renderCount = 0;

function currentPage() {
  const match = /^#\/([a-z]+)/.exec(window.location.hash);
  const name = match ? match[1] : DEFAULT_PAGE;
  return PAGES.find((p) => p.name === name) ? name : null;
}

function markNav(name) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route(event) {
  const name = currentPage();
  const mine = ++renderCount; // a newer navigation wins over a slow older one
  clear(main);
  markNav(name);
  const page = PAGES.find((p) => p.name === name);
  const root = el("section", { id: `page-${name || "unknown"}`, class: "page",
    "aria-labelledby": "page-heading" });
  main.append(root);
  if (!page) {
    root.append(el("h1", { id: "page-heading", tabindex: "-1" }, "Page not found"),
      el("p", {}, "Choose a page from the navigation."));
    return;
  }
  document.title = `${page.label} · SMS console`;
  let module;
  try {
    module = await import(`./pages/${name}.js`);
  } catch (error) {
    if (mine !== renderCount) return;
    root.append(el("h1", { id: "page-heading", tabindex: "-1" }, page.label),
      el("p", { class: "not-built" }, `The ${page.label} page is not built yet.`));
    status.textContent = `${page.label}: not built yet`;
    return;
  }
  if (mine !== renderCount) return;
  try {
    await module.render(root, api);
    status.textContent = `${page.label} loaded`;
  } catch (error) {
    if (mine !== renderCount) return;
    const box = el("div", { class: "error", role: "alert" });
    root.append(box);
    showError(box, error);
  }
  // After a navigation, move focus to the new page's heading so keyboard and screen-reader
  // users land on it; on the first load leave it at the top (the skip link comes first).
  const heading = root.querySelector("h1");
  if (event && heading) heading.focus({ preventScroll: true });
}

function buildNav() {
  const list = document.getElementById("nav-list");
  for (const page of PAGES) {
    list.append(el("li", {}, el("a", { href: `#/${page.name}`, "data-page": page.name }, page.label)));
  }
  document.getElementById("change-key").addEventListener("click", () => {
    askForKey("Enter the function key to use from now on.");
  });
}

buildNav();
window.addEventListener("hashchange", route);
if (!window.location.hash) window.history.replaceState(null, "", `#/${DEFAULT_PAGE}`);
// Ask for the key before the first page's calls, so a first visit sees one prompt.
(storedKey() ? Promise.resolve() : askForKey("")).then(() => route(null));
