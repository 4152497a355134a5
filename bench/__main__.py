"""`python -m bench`: start a private stack, measure every figure against its floor, report
(figure 8, the whole send path against the ACS SDK direct, on a second stack of its own;
figure 9, a campaign of millions from upload to fan-out, on a third).

Prints the table on stdout (progress on stderr) and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bench.campaigns import campaigns
from bench.floors import AcceptFloor
from bench.measure import NumberPool
from bench.millions import MIN_RECIPIENTS, MillionsOptions, millions
from bench.report import as_json, render, write_json
from bench.scenarios import (
    BODY,
    Api,
    Figure,
    big_requests,
    delivery_reports,
    dispatch,
    inbound_events,
    log,
    single_sends,
)
from bench.stack import SENDER, SENDER_RATE_PER_MINUTE, Stack, peak_rss_kib
from bench.whole_path import PathOptions, whole_path

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# Figure 9's N: see bench/README.md (figure 9) for the rates it was chosen from.
DEFAULT_MILLIONS = 50_000


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the stack's finally: children stop


def _main_figures(args: argparse.Namespace) -> tuple[list[Figure], dict[str, int | None]]:
    """Figures 1-7 on the main stack; returns them and the peak memory (figure 4)."""
    numbers = NumberPool()
    log("starting Azurite and the ACS emulator")
    with Stack() as stack:
        assert stack.pauses is not None
        pauses = stack.pauses
        # Dispatch first: its host must find only its own jobs on sms-outbound.
        mark = pauses.mark()
        dispatch_figure, dispatch_peak = dispatch(stack, numbers, args.messages,
                                                  args.dispatch_warmup)
        dispatch_figure.detail["azurite_pauses_s"] = pauses.since(mark)
        # Right after figure 2, on its messages, while Messages and BenchFloorMessages hold
        # as many rows (Azurite scans a whole table for every query; see the README).
        mark = pauses.mark()
        reports, reports_peak = delivery_reports(stack, numbers,
                                                 str(dispatch_figure.detail["tag"]),
                                                 args.reports, args.report_warmup)
        reports.detail["azurite_pauses_s"] = pauses.since(mark)
        log("starting the function host for the HTTP figures (queue triggers disabled)")
        host = stack.start_host("func-host-http",
                                disabled=("dispatch_sms", "delivery_report", "app_webhook"))
        api = Api(host.base_url, args.concurrency)
        floor = AcceptFloor(stack.storage, SENDER, BODY, stack.emulator_url, stack.acs_key,
                            SENDER_RATE_PER_MINUTE)
        try:
            mark = pauses.mark()
            cpu = stack.cpu_meter(host)
            single = single_sends(api, floor, numbers, args.messages, args.warmup,
                                  args.concurrency, cpu, stack.emulator_url)
            single.detail["azurite_pauses_s"] = pauses.since(mark)
            mark = pauses.mark()
            big = big_requests(api, floor, numbers, args.recipients, args.repeats,
                               warmup=2, cpu=cpu)
            big.detail["azurite_pauses_s"] = pauses.since(mark)
            inbound = inbound_events(stack, host, api, numbers, args.inbound, args.warmup,
                                     args.concurrency, cpu, pauses)
        finally:
            api.close()
            floor.close()
        http_peak = host.child.peak_rss_kib()
        # Its campaign_fanout trigger and campaign_scheduler timer must not take part in
        # figure 7, which runs last on this stack: it empties sms-outbound (see
        # bench/README.md).
        host.child.stop()
        campaign_figures, campaign_peak = campaigns(stack, numbers, args.campaign_recipients,
                                                    args.campaign_repeats, pauses)
        figures = [single, dispatch_figure, big, *inbound, reports, *campaign_figures]
        memory = {"function host (HTTP figures)": http_peak,
                  "function host (dispatch figure)": dispatch_peak,
                  "function host (delivery-report figure)": reports_peak,
                  "function host (campaign figures)": campaign_peak,
                  "ACS emulator": stack.emulator.peak_rss_kib() if stack.emulator else None,
                  "Azurite (node)": (peak_rss_kib(stack.azurite.process.pid)
                                     if stack.azurite else None)}
    return figures, memory


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whatever the ratios), 1 when it failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=1000,
                        help="single sends and dispatched messages measured (default 1000)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client connections for single sends (default 8)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="warm-up single sends before each measurement (default 50)")
    parser.add_argument("--dispatch-warmup", type=int, default=100,
                        help="messages dispatched before timing starts (default 100)")
    parser.add_argument("--recipients", type=int, default=1000,
                        help="recipients of the one-request figure (default 1000)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of the one-request figure (default 5)")
    parser.add_argument("--inbound", type=int, default=1000,
                        help="inbound events measured per mix, text and STOP (default 1000)")
    parser.add_argument("--reports", type=int, default=600,
                        help="delivery reports measured, applied to figure 2's messages "
                             "(default 600, to keep the whole run near 3 minutes)")
    parser.add_argument("--report-warmup", type=int, default=100,
                        help="delivery reports applied before timing starts (default 100)")
    parser.add_argument("--campaign-recipients", type=int, default=10000,
                        help="recipients of the campaign prepared and fanned out (default "
                             "10000)")
    parser.add_argument("--campaign-repeats", type=int, default=3,
                        help="timed prepares and fan-outs of the campaign figure (default 3)")
    parser.add_argument("--path-messages", type=int, default=600,
                        help="figure 8: sends timed and counted per side (default 600)")
    parser.add_argument("--path-latency-sends", type=int, default=40,
                        help="figure 8b: sequential sends per side (default 40)")
    parser.add_argument("--path-warmup", type=int, default=50,
                        help="figure 8: warm-up sends before each pass (default 50)")
    parser.add_argument("--path-quiet", type=float, default=5.0,
                        help="figure 8c: seconds of idle background counted (default 5)")
    parser.add_argument("--path-dlr-delay", type=float, default=1.0,
                        help="figure 8: the emulator's delivery-report delay, s (default 1.0, "
                             "as make run)")
    parser.add_argument("--millions", type=int, default=DEFAULT_MILLIONS,
                        help="figure 9: recipients uploaded, imported, prepared and fanned "
                             f"out (default {DEFAULT_MILLIONS:,}, what this 2-core machine "
                             "finishes within 30 minutes; see bench/README.md)")
    parser.add_argument("--millions-floor", type=int, default=None,
                        help="figure 9: recipients of the floors' sample (default N/10, at "
                             f"least {MIN_RECIPIENTS:,})")
    parser.add_argument("--millions-count", type=int, default=None,
                        help="figure 9: recipients of the count pass through the storage "
                             f"proxy, the second size (default N/5, at least "
                             f"{MIN_RECIPIENTS:,})")
    parser.add_argument("--only", choices=("all", "path", "millions"), default="all",
                        help="'path': only figure 8, 'millions': only figure 9 (each on its "
                             "own stack), to iterate quickly")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    if args.reports + args.report_warmup > args.messages + args.dispatch_warmup:
        parser.error("--reports + --report-warmup must not exceed the messages figure 2 "
                     "dispatches (--messages + --dispatch-warmup)")
    if args.campaign_recipients < 1 or args.campaign_repeats < 1:
        parser.error("--campaign-recipients and --campaign-repeats must be at least 1")
    if min(args.path_messages, args.path_latency_sends, args.path_warmup) < 1 \
            or args.path_quiet <= 0:
        parser.error("--path-messages, --path-latency-sends and --path-warmup must be at "
                     "least 1, --path-quiet above 0")
    if min(args.millions, args.millions_floor or MIN_RECIPIENTS,
           args.millions_count or MIN_RECIPIENTS) < MIN_RECIPIENTS:
        parser.error(f"--millions, --millions-floor and --millions-count must be at least "
                     f"{MIN_RECIPIENTS:,} (a background preparation needs over 10,000)")
    signal.signal(signal.SIGTERM, _on_sigterm)

    started = time.monotonic()
    figures: list[Figure] = []
    memory: dict[str, int | None] = {}
    try:
        if args.only == "all":
            figures, memory = _main_figures(args)
        if args.only in ("all", "path"):
            path_figure, path_memory = whole_path(PathOptions(
                messages=args.path_messages, concurrency=args.concurrency,
                warmup=args.path_warmup, latency_sends=args.path_latency_sends,
                quiet_s=args.path_quiet, dlr_delay_s=args.path_dlr_delay))
            figures.append(path_figure)
            memory.update(path_memory)
        if args.only in ("all", "millions"):
            millions_figures, millions_memory = millions(MillionsOptions(
                recipients=args.millions, floor_recipients=args.millions_floor,
                count_recipients=args.millions_count))
            figures.extend(millions_figures)
            memory.update(millions_memory)
    except (RuntimeError, OSError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    duration = time.monotonic() - started
    print(render(figures, memory))
    print(f"\n(total {duration:.0f} s; JSON in {args.out})")
    settings = {"messages": args.messages, "concurrency": args.concurrency,
                "warmup": args.warmup, "dispatch_warmup": args.dispatch_warmup,
                "recipients": args.recipients, "repeats": args.repeats,
                "inbound": args.inbound, "reports": args.reports,
                "report_warmup": args.report_warmup,
                "campaign_recipients": args.campaign_recipients,
                "campaign_repeats": args.campaign_repeats, "only": args.only,
                "path_messages": args.path_messages,
                "path_latency_sends": args.path_latency_sends,
                "path_warmup": args.path_warmup, "path_quiet_s": args.path_quiet,
                "path_dlr_delay_s": args.path_dlr_delay, "millions": args.millions,
                "millions_floor": args.millions_floor, "millions_count": args.millions_count}
    write_json(args.out, as_json(figures, memory, settings, duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
