"""The function app: checks the settings, applies SMS_LOG_FORMAT, creates the `FunctionApp`,
registers the blueprints.

The Python worker (and `localdev/func_host/`) index this module. Each blueprint package is
named for what it serves; the function names Azure sees are the names of the decorated functions
and are contract (infra/ alerts and the postdeploy hook use them). A bad app setting fails the
import, so the host reports it at start-up, naming the setting, and runs no function.
"""

from __future__ import annotations

import azure.functions as func

from campaigns.blueprint import bp as campaigns
from console.blueprint import bp as console
from delivery_report.blueprint import bp as delivery_report
from inbound_webhook.blueprint import bp as inbound_webhook
from operations.blueprint import bp as operations
from send_sms.blueprint import bp as send_sms
from sms_core.logs import configure_logging
from sms_core.settings import get_settings

configure_logging(get_settings().log_format)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (send_sms, inbound_webhook, delivery_report, campaigns, operations,
                  console):
    app.register_functions(blueprint)
