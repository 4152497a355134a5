// The "More" pager of the console's lists: an API list paged with `continuationToken` (GET
// /api/messages, /api/conversations, /api/conversations/{number}) shown a page at a time, each
// page added below the ones before.

/**
 * continuationPager(options): load the first page of a list, then the next ones with its
 * "More" button.
 *
 * options:
 * - fetchPage(token): the API call for one page; `token` is "" for the first page, else the
 *   previous page's `continuationToken`. Resolves to the page.
 * - itemsOf(page): the page's items (an array).
 * - reset(): called before the first page's items are added (empty the list).
 * - add(items): add one page's items to the list.
 * - more: the "More" button. A click loads the next page; it is hidden while no page remains
 *   and disabled (with every control in `busy`) while a page loads.
 * - busy: other controls to disable while a page loads (e.g. the search button).
 * - loading(first): a page starts loading (clear the error box, announce it).
 * - failed(error, first): the call failed (show the error, announce it).
 * - loaded({shown, more, first}): a page was added; `shown` counts the items shown since the
 *   first page, `more` tells whether another page remains.
 *
 * Returns {load(first)}: `load(true)` starts over from the first page, `load(false)` adds the
 * next one; it resolves to true when the page was added. A page that arrives after a newer
 * load started is dropped, so a new search never gets an older search's page.
 */
export function continuationPager({ fetchPage, itemsOf, reset, add, more, busy = [],
  loading, failed, loaded }) {
  let token = null;
  let shown = 0;
  let latest = 0;
  const controls = [more, ...busy];

  async function load(first) {
    const mine = ++latest;
    controls.forEach((control) => { control.disabled = true; });
    loading(first);
    let page;
    try {
      page = await fetchPage(first ? "" : token || "");
    } catch (error) {
      if (mine !== latest) return false;
      failed(error, first);
      return false;
    } finally {
      if (mine === latest) controls.forEach((control) => { control.disabled = false; });
    }
    if (mine !== latest) return false;
    if (first) { reset(); shown = 0; }
    const items = (page && itemsOf(page)) || [];
    add(items);
    shown += items.length;
    token = (page && page.continuationToken) || null;
    more.hidden = !token;
    loaded({ shown, more: Boolean(token), first });
    return true;
  }

  more.addEventListener("click", () => load(false));
  return { load };
}
