// The background preparation of a campaign for a large saved audience: POST /api/campaigns
// answers 202 with the campaign `preparing` (its `preview` null, its `preparation` telling how
// far it is), then GET /api/campaigns/{id} shows it growing until it is `prepared` or `failed`.

const STAGES = {
  chunks: "reading the audience",
  buckets: "finding duplicates and opt-outs",
  done: "done",
};

/** `n` with thousands separators, as the progress line writes it: 10050 -> "10,050". */
export function thousands(n) {
  return Number(n || 0).toLocaleString("en-US");
}

/** What a `preparation` says in words: "Preparing: 4,000 of 10,050 rows read (reading the
 * audience)". */
export function preparationText(p) {
  const stage = STAGES[p.stage] || p.stage || "starting";
  return `Preparing: ${thousands(p.rowsRead)} of ${thousands(p.rowsTotal)} rows read (${stage})`;
}

/**
 * followPreparation(options): look at a preparing campaign about once a second until it is no
 * longer `preparing`.
 *
 * options:
 * - fetchCampaign(): the API call (GET /api/campaigns/{id}); resolves to the campaign.
 * - alive(): false once the user left (its panel is no longer in the document): nothing more
 *   is asked and a late answer is dropped.
 * - wait(fn, ms): run `fn` after `ms` on the page's timer (the page clears it when it shows
 *   something else).
 * - update(campaign): an answer while it is still preparing (show its counts).
 * - settled(campaign): the first answer that is no longer `preparing` (prepared, failed, or
 *   canceled meanwhile); nothing more is asked after it.
 * - failed(error): a look that failed (show it); the next one is 5 s later.
 * - intervalMs: between looks, 1000 unless given.
 *
 * While the browser tab is hidden nothing is asked: the next look is made when it is shown
 * again. The first look is `intervalMs` from now (the caller shows what it has already).
 */
export function followPreparation({ fetchCampaign, alive, wait, update, settled, failed,
  intervalMs = 1000 }) {
  let waitingForTab = false;

  const whenShown = () => {
    if (document.hidden || !waitingForTab) return;
    waitingForTab = false;
    document.removeEventListener("visibilitychange", whenShown);
    if (alive()) look();
  };

  async function look() {
    if (!alive()) return;
    if (document.hidden) {
      if (!waitingForTab) {
        waitingForTab = true;
        document.addEventListener("visibilitychange", whenShown);
      }
      return;
    }
    let campaign;
    try {
      campaign = await fetchCampaign();
    } catch (error) {
      if (!alive()) return;
      failed(error);
      wait(look, 5000);
      return;
    }
    if (!alive()) return;
    if (campaign.status !== "preparing") {
      settled(campaign);
      return;
    }
    update(campaign);
    wait(look, intervalMs);
  }

  wait(look, intervalMs);
}
