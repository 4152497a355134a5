// Tiny DOM helpers. Every value reaches the page as text (textContent or a text node) or as an
// attribute from a short allow-list, never as HTML: a template, CSV cell, tag or inbound
// message holding `<script>` or `<img onerror=...>` must stay inert (issue 13).

// Attributes that cannot run script or load anything by themselves. `on*` handlers, `style`,
// `src`, `srcdoc`... are refused and `href` is checked, so data never becomes behaviour.
const SAFE_ATTRS = new Set([
  "id", "class", "name", "type", "value", "placeholder", "for", "role", "title", "lang",
  "min", "max", "step", "rows", "cols", "maxlength", "minlength", "pattern", "accept",
  "autocomplete", "inputmode", "download", "rel", "target", "spellcheck", "tabindex", "hidden", "disabled", "required",
  "readonly", "checked", "selected", "multiple", "open", "novalidate", "colspan", "rowspan", "scope",
  "datetime", "width", "height", "viewBox", "d", "x", "y", "x1", "x2", "y1", "y2", "cx", "cy",
  "r", "points", "fill", "stroke", "stroke-width", "transform", "text-anchor",
]);

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "g", "path", "rect", "line", "polyline", "circle", "text",
  "title", "desc"]);

// A link may point within the page or the site, or to an http(s) address: never javascript:,
// data: or another scheme that runs or embeds content.
const SAFE_HREF = /^(#|\/(?!\/)|\?|https?:\/\/)/i;

function isSafeAttr(name) {
  return SAFE_ATTRS.has(name) || name.startsWith("aria-") || name.startsWith("data-");
}

/**
 * el(tag, attrs, ...children): a new element.
 * attrs: safe attributes (strings; `true` sets an empty boolean attribute, false/null/undefined
 * skip), `href` (only `#...`, `/...`, `?...` or http(s) addresses), `text` (its textContent), and `on` ({click: fn, ...}) for listeners. Children: nodes,
 * or strings and numbers that become text nodes; null/undefined/false are skipped; arrays are
 * flattened. An unsafe attribute name throws, so a mistake shows up at once in a test.
 */
export function el(tag, attrs, ...children) {
  const node = SVG_TAGS.has(tag) && (tag !== "title" || (attrs && attrs.svg))
    ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (name === "svg") {
      continue;
    } else if (name === "href") {
      if (!SAFE_HREF.test(String(value))) throw new Error(`dom.el: unsafe href ${String(value)}`);
      node.setAttribute("href", String(value));
    } else if (isSafeAttr(name)) {
      node.setAttribute(name, value === true ? "" : String(value));
    } else {
      throw new Error(`dom.el: attribute ${name} is not on the safe list`);
    }
  }
  append(node, ...children);
  return node;
}

/** Append children (nodes; strings and numbers as text nodes). */
export function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** An ISO-8601 time in the user's locale and zone; "" for none, the input itself if unparsable. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** A live region's text: screen readers announce it (the element carries aria-live). */
export function announce(region, text) {
  region.textContent = String(text);
}
