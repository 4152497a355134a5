"""Timer triggers: NCRONTAB and TimeSpan schedules, the schedule status kept in a table so that
an occurrence missed while the host was down runs once at start-up (`isPastDue`), and the
scheduler thread that starts each occurrence on the host's workers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest as FuncTimerRequest

from localdev.func_host.config import parse_timespan
from localdev.func_host.errors import FunctionLoadError, FunctionTimeoutError
from localdev.func_host.indexing import FunctionDef
from localdev.func_host.invocation import Invoker

# The host's one logger: every module of the package logs as "localdev.func_host".
log = logging.getLogger("localdev.func_host")

TIMER_STATUS_TABLE = "LocalHostTimerStatus"
"""The table (in the host's storage account) holding each monitored timer's schedule status:
PartitionKey the host id (`FunctionHost.host_id`), RowKey the function name, and the ISO 8601
strings `Last`, `Next`, `LastUpdated`. The real host keeps the same record as a blob."""


class Schedule:
    """An NCRONTAB (6 or 5 fields, UTC) or TimeSpan (`hh:mm:ss`) timer schedule."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._interval: timedelta | None = None
        fields = expression.split()
        if len(fields) == 1 and ":" in expression:
            self._interval = timedelta(seconds=parse_timespan(expression, 0))
            if self._interval <= timedelta(0):
                raise FunctionLoadError(f"timer interval must be positive: {expression!r}")
            return
        if len(fields) not in (5, 6):
            raise FunctionLoadError(f"NCRONTAB needs 6 fields (sec min hour day month dow): "
                                    f"{expression!r}")
        from croniter import croniter  # imported here: only apps with timers need it

        # NCrontab requires both day-of-month and day-of-week to match (day_or=False), unlike
        # Vixie cron; its 6-field form puts seconds first.
        self._seconds_first = len(fields) == 6
        if not croniter.is_valid(expression, second_at_beginning=self._seconds_first):
            raise FunctionLoadError(f"invalid NCRONTAB expression {expression!r}")
        self._croniter = croniter

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after `when` (UTC)."""
        if self._interval is not None:
            return when + self._interval
        it = self._croniter(self.expression, when, ret_type=datetime, day_or=False,
                            second_at_beginning=self._seconds_first)
        nxt: datetime = it.get_next(datetime)
        return nxt

    def monitored_by_default(self, now: datetime) -> bool:
        """The host monitors a schedule (keeps its status) unless it recurs within a minute."""
        first = self.next_after(now)
        return self.next_after(first) - first >= timedelta(minutes=1)


@dataclass(frozen=True)
class ScheduleStatus:
    """A timer's recorded schedule status, as the host's ScheduleMonitor keeps it."""

    last: datetime | None
    next: datetime
    last_updated: datetime | None

    def as_request(self) -> dict[str, str]:
        """The `schedule_status` a TimerRequest carries."""
        return {"Last": (self.last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": self.next.isoformat(),
                "LastUpdated": (self.last_updated or datetime.min.replace(tzinfo=UTC)).isoformat()}


@dataclass
class TimerState:
    function: FunctionDef
    schedule: Schedule
    run_on_startup: bool
    monitored: bool
    next_due: datetime
    last: datetime | None = None
    status: ScheduleStatus | None = None
    running: bool = False


class TimerStatusStore:
    """Schedule status per timer function, in a table of the host's storage account."""

    def __init__(self, connection: str | dict[str, str], host_id: str) -> None:
        self.connection = connection
        self.host_id = host_id
        self._client: Any = None

    def _table(self) -> Any:
        if self._client is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.data.tables import TableClient

            # Few retries: a status read must not hold the scheduler for long.
            if isinstance(self.connection, str):
                client = TableClient.from_connection_string(
                    self.connection, TIMER_STATUS_TABLE, retry_total=1)
            else:
                from azure.identity import DefaultAzureCredential

                client = TableClient(self.connection["account_url"], TIMER_STATUS_TABLE,
                                     credential=DefaultAzureCredential(), retry_total=1)
            with contextlib.suppress(ResourceExistsError):
                client.create_table()
            self._client = client
        return self._client

    def get(self, name: str) -> ScheduleStatus | None:
        """The recorded status, or None if the timer never recorded one."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table().get_entity(self.host_id, name)
        except ResourceNotFoundError:
            return None

        def when(key: str) -> datetime | None:
            value = entity.get(key)
            return datetime.fromisoformat(value) if value else None

        nxt = when("Next")
        if nxt is None:
            return None
        return ScheduleStatus(last=when("Last"), next=nxt, last_updated=when("LastUpdated"))

    def put(self, name: str, status: ScheduleStatus) -> None:
        """Record a status (replacing the previous one)."""
        from azure.data.tables import UpdateMode

        self._table().upsert_entity({
            "PartitionKey": self.host_id, "RowKey": name,
            "Last": status.last.isoformat() if status.last else "",
            "Next": status.next.isoformat(),
            "LastUpdated": status.last_updated.isoformat() if status.last_updated else "",
        }, mode=UpdateMode.REPLACE)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def check_past_due(schedule: Schedule, status: ScheduleStatus | None,
                   now: datetime) -> tuple[ScheduleStatus, bool, bool]:
    """The status to keep at start-up and whether an occurrence was missed while down.

    Mirrors the host's ScheduleMonitor.CheckPastDueAsync: a `Next` that no longer follows from
    `Last` (or `LastUpdated`) means the schedule changed, and is recomputed (from now if it
    would lie in the past) instead of counting as missed. Returns (status, past due, changed).
    """
    if status is None:
        return ScheduleStatus(None, schedule.next_after(now), now), False, True
    basis = status.last or status.last_updated or now
    expected = schedule.next_after(basis)
    changed = status.next != expected
    if changed:
        if now > expected:
            expected, basis = schedule.next_after(now), now
        status = ScheduleStatus(None, expected, basis)
    return status, now > status.next, changed


# --------------------------------------------------------------------------------------------
# The scheduler


class TimerScheduler:
    """Runs the timer triggers: at start-up (past due, runOnStartup), then each occurrence."""

    def __init__(self, invoker: Invoker, stop_event: threading.Event) -> None:
        self.invoker = invoker
        self.stop_event = stop_event
        self.timers: list[TimerState] = []
        # The status table, when some timer is monitored and the host has storage.
        self.store: TimerStatusStore | None = None
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the scheduler thread (only if there are timers)."""
        if self.timers:
            self.thread = threading.Thread(target=self._run, name="func-host-timers",
                                           daemon=True)
            self.thread.start()

    def wake(self) -> None:
        """Wake the scheduler thread (the host is stopping)."""
        with self.cond:
            self.cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` s for the scheduler thread to end."""
        if self.thread is not None:
            self.thread.join(timeout)

    def wait_recorded(self, deadline: float) -> None:
        """Wait until no timer invocation is still running or recording its status, up to
        `deadline` (a time.monotonic() value)."""
        with self.cond:
            while any(t.running for t in self.timers) and time.monotonic() < deadline:
                self.cond.wait(max(0.01, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the status table's client."""
        if self.store is not None:
            self.store.close()

    # The scheduler loop ----------------------------------------------------------------------

    def _run(self) -> None:
        now = datetime.now(UTC)
        startup = [(t, self._timer_startup(t, now)) for t in self.timers]
        with self.cond:
            for t, past_due in startup:
                if self.stop_event.is_set():
                    return
                if past_due and t.status is not None:
                    # Missed while the host was down: once now, then the schedule resumes.
                    self._fire_timer(t, t.status.next, now, past_due=True)
                elif t.run_on_startup:
                    self._fire_timer(t, now, now, past_due=False)
        while not self.stop_event.is_set():
            with self.cond:
                now = datetime.now(UTC)
                wait = 1.0
                for t in self.timers:
                    if t.running:
                        continue
                    if t.next_due <= now:
                        # Late by more than a second (e.g. the previous run overran): tell it.
                        late = (now - t.next_due) > timedelta(seconds=1)
                        self._fire_timer(t, t.next_due, now, past_due=late)
                    else:
                        wait = min(wait, (t.next_due - now).total_seconds())
                self.cond.wait(max(0.005, wait))

    def _timer_startup(self, t: TimerState, now: datetime) -> bool:
        """Read a monitored timer's status; True when an occurrence was missed while down."""
        if not t.monitored or self.store is None:
            return False
        name = t.function.name
        try:
            status, past_due, changed = check_past_due(
                t.schedule, self.store.get(name), now)
            if changed:
                self.store.put(name, status)
        except Exception as exc:
            log.warning("%s: cannot read the timer status from table %s (%r); not checking "
                        "for a missed occurrence", name, TIMER_STATUS_TABLE, exc)
            return False
        t.status = status
        if past_due:
            log.info("Timer '%s' is past due (next occurrence was %s)", name,
                     status.next.isoformat())
        return past_due

    def _fire_timer(self, t: TimerState, scheduled: datetime, now: datetime, *,
                    past_due: bool) -> None:
        """Start one timer invocation on a worker (caller holds the timer condition)."""
        t.running = True
        request = FuncTimerRequest(
            past_due=past_due,
            schedule_status=t.status.as_request() if t.status is not None else {
                "Last": (t.last or scheduled).isoformat(),
                "Next": t.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )

        def run() -> None:
            try:
                self.invoker.invoke(t.function, request)
            except FunctionTimeoutError:
                pass  # invoke() logged it
            except Exception:
                log.error("%s failed", t.function.name, exc_info=True)
            finally:
                if t.monitored:
                    self._record_timer_run(t, now)
                with self.cond:
                    t.running = False
                    t.last = scheduled
                    # Like the real host: the next occurrence after now, no catch-up storm.
                    t.next_due = t.schedule.next_after(datetime.now(UTC))
                    self.cond.notify_all()

        self.invoker.workers.submit(run)

    def _record_timer_run(self, t: TimerState, invoked: datetime) -> None:
        """After an invocation: Last = its time, Next = the occurrence after it (as the host)."""
        status = ScheduleStatus(invoked, t.schedule.next_after(invoked), invoked)
        t.status = status
        if self.store is None:
            return
        try:
            self.store.put(t.function.name, status)
        except Exception as exc:
            log.warning("%s: cannot record the timer status in table %s: %r", t.function.name,
                        TIMER_STATUS_TABLE, exc)
