"""A local Azure Functions host for the Python app in the v2 programming model.

Azure Functions Core Tools cannot be installed here, so this module stands in for `func start`:
it reads `host.json`, imports the app's `function_app.py` (or `PYTHON_SCRIPT_FILE_NAME`) as the
Python worker does, indexes its one `azure.functions.FunctionApp` (`get_functions()`: each
function's name, user function and bindings, blueprints included) and runs the functions
in-process with the semantics of the Functions runtime v4 host:

- HTTP triggers under `extensions.http.routePrefix` (default `api`), ASP.NET Core route templates
  (`{name}`, `{name?}`, `{name=default}`, `{*rest}`, `{name}.{ext?}`) with route constraints
  (`int`, `guid`, `alpha`, `min(1)`, `regex(...)`, chained as `{n:int:min(1)}`), `methods` as a
  route constraint (no route for the path and method: 404), and `authLevel` (`function`: a function
  or the master key, `admin`: the master key; header `x-functions-key` or query `code`, checked
  before the body is read, else a 401 `application/problem+json` saying which key is missing or
  wrong: Azure's own 401 may have an empty body);
- queue triggers with `extensions.queues` (`batchSize`, `newBatchThreshold`,
  `visibilityTimeout`, `maxDequeueCount`, `maxPollingInterval`, `messageEncoding`) and the
  `<queue>-poison` queue;
- timer triggers with 6-field NCRONTAB (or 5-field, or a `hh:mm:ss` TimeSpan), `runOnStartup`,
  and a schedule status in storage so that an occurrence missed while the host was down runs once
  at start-up with `isPastDue`;
- `functionTimeout` (an invocation past it fails: HTTP 500, or a failed queue attempt; a sync
  function cannot be stopped, so it runs on and its late result is dropped), the `functions`
  list of host.json and the `AzureWebJobs.<name>.Disabled` app setting;
- `%SETTING%` indirection in queue names and schedules, resolved from the environment.

Functions receive real `azure.functions` objects (`HttpRequest`, `QueueMessage`,
`TimerRequest`, `Context`). The app root is first on `sys.path`, so functions and blueprints can
`from sms_core import ...`.

Run it with `python -m localdev.func_host --root . --port 7071`, or embed `FunctionHost` in tests.

The modules, each importing only those above it:

- `errors`: `FunctionLoadError`, `FunctionTimeoutError`;
- `config`: host.json (`HostConfig`, `QueueOptions`, TimeSpan durations) and app settings
  (`%SETTING%` references, the default keys, storage connections);
- `routing`: route templates and constraints (`compile_route`, `RoutePattern`, precedence);
- `indexing`: importing the app's script for a root, `get_functions()`, `FunctionDef`;
- `invocation`: binding parameters (`context`, `func.Out`), the worker threads, the event loop
  of `async def` functions, functionTimeout;
- `http`, `queues`, `timers`: the three triggers (server and dispatch; pollers and poison
  queues; schedules, their status table and the scheduler);
- `host`: `FunctionHost`, which wires them together and starts and stops them;
- `__main__`: the command line.
"""

from localdev.func_host.config import (
    DEFAULT_FUNCTION_KEY,
    DEFAULT_FUNCTION_TIMEOUT_S,
    DEFAULT_MASTER_KEY,
    DEFAULT_STORAGE_SETTING,
    HostConfig,
    QueueOptions,
    format_timespan,
    parse_timespan,
    resolve_settings,
)
from localdev.func_host.errors import FunctionLoadError, FunctionTimeoutError
from localdev.func_host.host import FunctionHost
from localdev.func_host.http import HttpRoute
from localdev.func_host.indexing import (
    DEFAULT_SCRIPT_FILE,
    FunctionDef,
    index_function_app,
    load_function,
)
from localdev.func_host.invocation import InvocationContext
from localdev.func_host.queues import RECEIVE_VISIBILITY_S
from localdev.func_host.routing import (
    Constraint,
    RouteParameter,
    RoutePattern,
    compile_route,
    resolve_constraint,
)
from localdev.func_host.timers import TIMER_STATUS_TABLE, Schedule, ScheduleStatus, check_past_due

__all__ = [
    "DEFAULT_FUNCTION_KEY",
    "DEFAULT_FUNCTION_TIMEOUT_S",
    "DEFAULT_MASTER_KEY",
    "DEFAULT_SCRIPT_FILE",
    "DEFAULT_STORAGE_SETTING",
    "RECEIVE_VISIBILITY_S",
    "TIMER_STATUS_TABLE",
    "Constraint",
    "FunctionDef",
    "FunctionHost",
    "FunctionLoadError",
    "FunctionTimeoutError",
    "HostConfig",
    "HttpRoute",
    "InvocationContext",
    "QueueOptions",
    "RouteParameter",
    "RoutePattern",
    "Schedule",
    "ScheduleStatus",
    "check_past_due",
    "compile_route",
    "format_timespan",
    "index_function_app",
    "load_function",
    "parse_timespan",
    "resolve_constraint",
    "resolve_settings",
]
