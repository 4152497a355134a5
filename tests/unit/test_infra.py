"""infra/ (Bicep for azd) says what docs/deploy.md promises: what Checkov does not check.

Checkov (`make lint`) scans the resources for generic misconfigurations. These tests pin the
decisions that are this project's own: identity-only (no key, connection string or secret in an
app setting), local auth off on storage and monitoring, every queue and table of `sms_core`
created by the template, the Event Grid wiring, the alerts, and the azd layout. There is no Bicep
compiler here, so the module wiring (params passed, outputs read) is cross-checked as well.

The Bicep is read as text: a small scanner that knows strings and comments finds blocks and
properties; that is all these assertions need.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sms_core.adapters import storage as sms_storage
from tests.app_functions import app_functions

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"


# --- a small Bicep text reader -------------------------------------------------------------


def _strip_comments(text: str) -> str:
    """The text with // and /* */ comments blanked out (strings, with \\' escapes, kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end + 3
            out.append(text[i:end])
            i = end
        elif c == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _matching(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at `start` (strings skipped)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "'":
            i += 1
            while i < len(text) and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
        elif c in pairs:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise AssertionError(f"unbalanced bracket at {start}")


def _bicep(path: Path) -> str:
    return _strip_comments(path.read_text(encoding="utf-8"))


HEADER = re.compile(
    r"^[ \t]*(?P<kind>resource|module)\s+(?P<name>\w+)\s+'(?P<type>[^'@]+)(?:@[^']*)?'"
    r"(?P<existing>\s+existing)?\s*=",
    re.M,
)


def _declarations(text: str, kind: str) -> dict[str, tuple[str, str, bool]]:
    """{symbolic name: (type or module path, body text, is `existing`)} of resources or modules."""
    found: dict[str, tuple[str, str, bool]] = {}
    for m in HEADER.finditer(text):
        if m.group("kind") != kind:
            continue
        open_at = min(p for p in (text.find("{", m.end()), text.find("[", m.end())) if p >= 0)
        body = text[open_at : _matching(text, open_at)]
        found[m.group("name")] = (m.group("type"), body, bool(m.group("existing")))
    return found


def _resources(path: Path) -> dict[str, tuple[str, str, bool]]:
    return _declarations(_bicep(path), "resource")


def _of_type(path: Path, rtype: str, *, existing: bool = False) -> list[str]:
    """Bodies of the resources of one type declared (not `existing`) in a file."""
    return [body for t, body, ex in _resources(path).values() if t == rtype and ex == existing]


def _values(body: str, key: str) -> list[str]:
    """Every value written as `key: value` on one line in a block."""
    return [v.strip() for v in re.findall(rf"(?m)^\s*'?{re.escape(key)}'?\s*:\s*(.+?)\s*$", body)]


def _value(body: str, key: str) -> str:
    values = _values(body, key)
    assert len(values) == 1, f"expected one {key!r}, found {values}"
    return values[0]


def _block(body: str, key: str) -> str:
    """The `{...}` or `[...]` that follows `key:` in a block."""
    m = re.search(rf"(?m)^\s*'?{re.escape(key)}'?\s*:\s*([{{\[])", body)
    assert m, f"no {key!r} block"
    return body[m.start(1) : _matching(body, m.start(1))]


def _string_list(text: str, var: str) -> list[str]:
    """The literal strings of `var <var> = [ ... ]`."""
    m = re.search(rf"(?m)^var\s+{re.escape(var)}\s*=\s*\[", text)
    assert m, f"no var {var}"
    return re.findall(r"'([^']*)'", text[m.end() - 1 : _matching(text, m.end() - 1)])


def _params(path: Path) -> dict[str, bool]:
    """{param name: has a default value} of a Bicep file."""
    text = _bicep(path)
    return {
        m.group(1): bool(m.group(2))
        for m in re.finditer(r"(?m)^param\s+(\w+)\s+\w+(\s*=.*)?$", text)
    }


def _outputs(path: Path) -> set[str]:
    return set(re.findall(r"(?m)^output\s+(\w+)\s", _bicep(path)))


def _object_keys(block: str) -> set[str]:
    """Top-level keys of a `{...}` object literal."""
    inner, keys, depth = block[1:-1], set(), 0
    for line in inner.splitlines():
        if depth == 0:
            m = re.match(r"\s*'?([\w-]+)'?\s*:", line)
            if m:
                keys.add(m.group(1))
        bare = re.sub(r"'(?:\\.|[^'\\])*'", "''", line)
        depth += bare.count("{") + bare.count("[") - bare.count("}") - bare.count("]")
    return keys


# --- the reader itself can fail --------------------------------------------------------------


def test_reader_sees_through_comments_and_strings() -> None:
    text = _strip_comments(
        "var a = 'https://x' // allowSharedKeyAccess: true\n"
        "/* allowSharedKeyAccess: true */ var b = 'it\\'s {'\n"
    )
    assert "allowSharedKeyAccess" not in text
    assert "'https://x'" in text
    assert "'it\\'s {'" in text
    body = "{\n  a: '}'\n  b: {\n    c: 1\n  }\n}"
    assert _matching(body, 0) == len(body)
    assert _object_keys(body) == {"a", "b"}


# --- storage -----------------------------------------------------------------------------------


STORAGE = MODULES / "storage.bicep"


def _storage_account() -> str:
    (account,) = _of_type(STORAGE, "Microsoft.Storage/storageAccounts")
    return account


def test_storage_is_identity_only_and_locked_down() -> None:
    account = _storage_account()
    assert _value(account, "allowSharedKeyAccess") == "false"
    assert _value(account, "defaultToOAuthAuthentication") == "true"
    assert _value(account, "allowBlobPublicAccess") == "false"
    assert _value(account, "minimumTlsVersion") == "'TLS1_2'"
    assert _value(account, "supportsHttpsTrafficOnly") == "true"
    for container in _of_type(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert _value(container, "publicAccess") == "'None'"


def _loop_names(rtype: str) -> list[str]:
    """For each `[for x in list: {...}]` resource of a type: the names it creates, expanded."""
    text = _bicep(STORAGE)
    names: list[str] = []
    for t, body, existing in _declarations(text, "resource").values():
        if t != rtype or existing:
            continue
        m = re.match(r"\[\s*for\s+(\w+)\s+in\s+(\w+)\s*:", body)
        assert m, f"{t} is expected to be a loop over a name list"
        item, source = m.groups()
        pattern = _value(body, "name")
        for value in _string_list(text, source):
            if pattern == item:
                names.append(value)
            else:
                template = re.fullmatch(r"'(.*)'", pattern)
                assert template, pattern
                names.append(template.group(1).replace("${" + item + "}", value))
    return names


def test_every_queue_of_the_app_and_its_poison_twin_is_created() -> None:
    created = set(_loop_names("Microsoft.Storage/storageAccounts/queueServices/queues"))
    # The campaigns work adds `sms-campaigns` to ALL_QUEUES; the template creates it already.
    for queue in (*sms_storage.ALL_QUEUES, "sms-campaigns"):
        assert queue in created, f"queue {queue} is not created by infra/"
        assert f"{queue}-poison" in created, f"queue {queue}-poison is not created by infra/"
    assert all(re.fullmatch(r"[a-z0-9](-?[a-z0-9])+", q) and len(q) <= 63 for q in created)


def test_every_table_of_the_app_is_created() -> None:
    created = set(_loop_names("Microsoft.Storage/storageAccounts/tableServices/tables"))
    campaign_tables = ("Campaigns", "CampaignRecipients", "Audiences", "Templates")
    expected = {*sms_storage.ALL_TABLES, *campaign_tables}
    missing = expected - created
    assert not missing, f"tables not created by infra/: {sorted(missing)}"
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", t) for t in created)


def test_the_uploads_container_is_created_and_abandoned_uploads_expire() -> None:
    names = [_value(c, "name") for c in
             _of_type(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers")]
    assert f"'{sms_storage.UPLOADS_CONTAINER}'" in names
    text = STORAGE.read_text()
    assert f"prefixMatch: [ '{sms_storage.UPLOADS_CONTAINER}/' ]" in text
    assert "daysAfterModificationGreaterThan" in text


# --- monitoring --------------------------------------------------------------------------------


MONITORING = MODULES / "monitoring.bicep"


def test_app_insights_and_log_analytics_accept_entra_id_only() -> None:
    (insights,) = _of_type(MONITORING, "Microsoft.Insights/components")
    assert _value(insights, "DisableLocalAuth") == "true"
    assert _value(insights, "WorkspaceResourceId") == "workspace.id"
    (workspace,) = _of_type(MONITORING, "Microsoft.OperationalInsights/workspaces")
    assert _value(_block(workspace, "features"), "disableLocalAuth") == "true"


# --- function app ------------------------------------------------------------------------------


FUNCTIONAPP = MODULES / "functionapp.bicep"
SECRET_MARKERS = (
    "listKeys(",
    "listkeys(",
    "AccountKey=",
    "SharedAccessSignature",
    "accesskey=",
    "InstrumentationKey=",
    "ACS_CONNECTION_STRING",
    "@secure()",
)


def _app_settings() -> dict[str, str]:
    """Every app setting the template writes: name -> Bicep expression."""
    text = _bicep(FUNCTIONAPP)
    site = _declarations(text, "resource")["site"][1]
    (settings,) = [
        body
        for t, body, _ in _declarations(site, "resource").values()
        if t == "config" and _value(body, "name") == "'appsettings'"
    ]
    union = re.fullmatch(r"union\((.*)\)", _value(settings, "properties"))
    assert union, "appsettings are expected as union(<var>, ...)"
    merged: dict[str, str] = {}
    for var in (v.strip() for v in union.group(1).split(",")):
        # `var x = {...}`, or `var x = <condition> ? {} : {...}` for optional settings.
        m = re.search(rf"(?m)^var\s+{var}\s*=\s*(?:[^\n{{]*\?\s*\{{\}}\s*:\s*)?\{{", text)
        assert m, f"no var {var}"
        block = text[m.end() - 1 : _matching(text, m.end() - 1)]
        for key in _object_keys(block):
            merged[key] = _value(block, key)
    return merged


def test_app_settings_hold_no_key_connection_string_or_secret() -> None:
    settings = _app_settings()
    assert len(settings) >= 10
    for name, value in settings.items():
        for marker in SECRET_MARKERS:
            assert marker.lower() not in f"{name}={value}".lower(), f"{name} carries {marker}"
    # A plain AzureWebJobsStorage is a connection string; the ACS one would carry the access key.
    assert "AzureWebJobsStorage" not in settings
    assert "ACS_CONNECTION_STRING" not in settings
    # The one secret the app may use is a Key Vault reference, never a value.
    assert settings["SMS_APP_WEBHOOK_SECRET"] == (
        "'@Microsoft.KeyVault(SecretUri=${smsAppWebhookSecretUri})'"
    )
    site = _resources(FUNCTIONAPP)["site"][1]
    assert _value(site, "keyVaultReferenceIdentity") == "identityId"
    for path in [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json")]:
        raw = path.read_text(encoding="utf-8")
        for marker in ("listKeys(", "AccountKey=", "SharedAccessSignature", "@secure()"):
            assert marker not in raw, f"{path.relative_to(ROOT)} contains {marker}"


def test_app_insights_connection_string_comes_with_entra_auth() -> None:
    """The connection string only names the resource: accepted because local auth is off and
    the host authenticates with the app identity (Monitoring Metrics Publisher)."""
    settings = _app_settings()
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == (
        "applicationInsights.properties.ConnectionString"
    )
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "'Authorization=AAD;ClientId=${identityClientId}'"
    )
    (insights,) = _of_type(MONITORING, "Microsoft.Insights/components")
    assert _value(insights, "DisableLocalAuth") == "true"


def test_storage_and_acs_settings_are_identity_based() -> None:
    settings = _app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"] == (
            f"storage.properties.primaryEndpoints.{service}"
        )
    # DefaultAzureCredential (the ACS client) picks the user-assigned identity by AZURE_CLIENT_ID.
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["ACS_ENDPOINT"] == "acsEndpoint"
    for name in ("SMS_DEFAULT_FROM", "SMS_SENDER_RATE_PER_MINUTE", "SMS_OPTOUT_SCOPE"):
        assert name in settings
    site = _resources(FUNCTIONAPP)["site"][1]
    assert _value(_block(site, "identity"), "type") == "'UserAssigned'"
    auth = _block(_block(_block(site, "deployment"), "storage"), "authentication")
    assert _value(auth, "type") == "'UserAssignedIdentity'"


def test_function_app_is_flex_consumption_python_https_only() -> None:
    (plan,) = _of_type(FUNCTIONAPP, "Microsoft.Web/serverfarms")
    sku = _block(plan, "sku")
    assert (_value(sku, "name"), _value(sku, "tier")) == ("'FC1'", "'FlexConsumption'")
    site = _resources(FUNCTIONAPP)["site"][1]
    assert _value(site, "kind") == "'functionapp,linux'"
    assert _value(site, "httpsOnly") == "true"
    config = _block(site, "siteConfig")
    assert _value(config, "minTlsVersion") == "'1.2'"
    assert _value(config, "ftpsState") == "'Disabled'"
    assert _value(config, "healthCheckPath") == "'/api/health'"
    runtime = _block(site, "runtime")
    assert _value(runtime, "name") == "'python'"
    main = _bicep(INFRA / "main.bicep")
    assert re.search(r"(?m)^param pythonVersion string = '3\.11'$", main)
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["extensionBundle"]["version"].startswith("[4."), "Flex needs bundle [4.0.0, 5.0.0)"


# --- console sign-in (App Service authentication) -------------------------------------------


def _site_config(name: str) -> str:
    """The body of the site's nested `config` resource of that name."""
    site = _resources(FUNCTIONAPP)["site"][1]
    (body,) = [
        b
        for t, b, _ in _declarations(site, "resource").values()
        if t == "config" and _value(b, "name") == f"'{name}'"
    ]
    return body


def _var_object(text: str, var: str) -> str:
    """The `{...}` of `var <var> = {...}`."""
    m = re.search(rf"(?m)^var\s+{re.escape(var)}\s*=\s*\{{", text)
    assert m, f"no var {var}"
    return text[m.end() - 1 : _matching(text, m.end() - 1)]


def _console_auth() -> str:
    """authsettingsV2 as written when the console sign-in is on."""
    auth = _site_config("authsettingsV2")
    assert _value(auth, "properties") == "consoleAuthEnabled ? consoleAuthOn : consoleAuthOff"
    return _var_object(_bicep(FUNCTIONAPP), "consoleAuthOn")


def _excluded(path: str, patterns: list[str]) -> bool:
    """Whether Easy Auth's excludedPaths let `path` through: exact, or under a `/prefix/*`."""
    return any(
        path == p or (p.endswith("/*") and path.startswith(p[:-1])) for p in patterns
    )


def _concrete(route: str) -> list[str]:
    """Request paths a Functions route template serves (`{x}` -> a value, optional parts off)."""
    full = "/api/" + route
    sample = re.sub(r"\{\*?[^}]*\}", "x", full)
    shortest = re.sub(r"/\{[^}]*\?\}", "", full)
    return sorted({sample, re.sub(r"\{\*?[^}]*\}", "x", shortest)})


CONSOLE_FUNCTIONS = {"console_page", "console_files"}


def test_console_sign_in_is_optional_and_off_by_default() -> None:
    main = _bicep(INFRA / "main.bicep")
    assert re.search(r"(?m)^param consoleAuthClientId string = ''$", main)
    params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert params["consoleAuthClientId"]["value"] == "${AZURE_CONSOLE_AUTH_CLIENT_ID}"
    text = _bicep(FUNCTIONAPP)
    assert re.search(r"(?m)^var consoleAuthEnabled = !empty\(consoleAuthClientId\)$", text)
    site = _resources(FUNCTIONAPP)["site"][1]
    # Written either way, so that unsetting the client id turns a sign-in off again.
    _console_auth()
    off = _var_object(text, "consoleAuthOff")
    assert _object_keys(off) == {"platform"}
    assert _value(_block(off, "platform"), "enabled") == "false"
    # The identity exists only with the sign-in, and is the app's second identity only then.
    rbac = _bicep(MODULES / "rbac.bicep")
    assert re.search(
        r"resource consoleAuthIdentity '[^']+' = if \(!empty\(consoleAuthIdentityName\)\)", rbac
    )
    assert "empty(consoleAuthClientId) ? '' :" in main
    assert _value(_block(site, "identity"), "userAssignedIdentities") == "siteIdentities"
    m = re.search(r"(?m)^var siteIdentities = consoleAuthEnabled \? \{", text)
    assert m, "siteIdentities is expected as consoleAuthEnabled ? {...} : {...}"
    with_console = text[m.end() - 1 : _matching(text, m.end() - 1)]
    rest = text[m.end() - 1 + len(with_console) :]
    otherwise = rest[rest.index("{") : _matching(rest, rest.index("{"))]
    assert "'${identityId}': {}" in with_console
    assert "'${consoleAuthIdentityId}': {}" in with_console
    assert "'${identityId}': {}" in otherwise and "consoleAuthIdentityId" not in otherwise
    assert "AZURE_CONSOLE_AUTH_IDENTITY_PRINCIPAL_ID" in _outputs(INFRA / "main.bicep")


def test_console_sign_in_is_entra_id_without_a_client_secret() -> None:
    auth = _console_auth()
    assert _value(_block(auth, "platform"), "enabled") == "true"
    aad = _block(_block(auth, "identityProviders"), "azureActiveDirectory")
    assert _value(aad, "enabled") == "true"
    registration = _block(aad, "registration")
    assert _value(registration, "clientId") == "consoleAuthClientId"
    assert _value(registration, "openIdIssuer") == (
        "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    )
    # The client credential is the identity's federated credential: the setting named here holds
    # the identity's client id, not a secret (Microsoft's documented setting name).
    assert _value(registration, "clientSecretSettingName") == "consoleAuthSecretSettingName"
    text = _bicep(FUNCTIONAPP)
    assert re.search(
        r"(?m)^var consoleAuthSecretSettingName = 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'$", text
    )
    settings = _app_settings()
    assert settings["OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"] == "consoleAuthIdentityClientId"
    assert "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET" not in settings
    assert "clientSecretCertificate" not in auth
    assert _value(_block(_block(auth, "login"), "tokenStore"), "enabled") == "false"
    assert _value(_block(auth, "httpSettings"), "requireHttps") == "true"


def test_console_sign_in_covers_the_console_and_no_keyed_route() -> None:
    auth = _console_auth()
    validation = _block(auth, "globalValidation")
    assert _value(validation, "requireAuthentication") == "true"
    assert _value(validation, "unauthenticatedClientAction") == "'RedirectToLoginPage'"
    assert _value(validation, "redirectToProvider") == "'azureactivedirectory'"
    assert _value(validation, "excludedPaths") == "consoleAuthExcludedPaths"
    excluded = _string_list(_bicep(FUNCTIONAPP), "consoleAuthExcludedPaths")
    assert all(p.startswith("/") and "*" not in p[:-1] for p in excluded), excluded
    routes: dict[str, str] = {}
    for name, function in app_functions().items():
        for binding in function["bindings"]:
            if binding["type"] == "httpTrigger":
                routes[name] = binding.get("route") or name
    assert set(routes) >= CONSOLE_FUNCTIONS, "the console's functions moved: update this test"
    for name, route in sorted(routes.items()):
        for path in _concrete(route):
            if name in CONSOLE_FUNCTIONS:
                assert not _excluded(path, excluded), f"{path} ({name}) skips the sign-in"
            else:
                # Event Grid, the health check and keyed apps carry no Entra ID token.
                assert _excluded(path, excluded), (
                    f"{path} ({name}) is not in consoleAuthExcludedPaths: its keyed callers "
                    "would be sent to the Entra ID sign-in"
                )
    for host_path in ("/admin/host/status", "/runtime/webhooks/eventgrid"):
        assert _excluded(host_path, excluded), host_path
    for console_path in ("/api/console", "/api/console/app.js"):
        assert not _excluded(console_path, excluded), console_path


# --- role assignments --------------------------------------------------------------------------


def test_identities_hold_the_roles_identity_only_access_needs() -> None:
    rbac = (MODULES / "rbac.bicep").read_text(encoding="utf-8")
    for role_id in (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner (host, deployment)
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "3913510d-42f4-4e42-8a64-420c390055eb",  # Monitoring Metrics Publisher
        "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",  # Storage Queue Data Message Sender (Event Grid)
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe",  # Storage Blob Data Contributor (dead letters)
    ):
        assert role_id in rbac, role_id
    main = _bicep(INFRA / "main.bicep")
    # Communication and Email Service Owner: sending SMS with Entra ID.
    assert re.search(
        r"(?m)^param acsSenderRoleDefinitionId string = '09976791-48a7-449e-bb21-39d1a415f350'$",
        main,
    )
    assignments = _of_type(MODULES / "rbac.bicep", "Microsoft.Authorization/roleAssignments")
    assert any(_value(a, "scope") == "communicationService" for a in assignments)
    assert any(_value(a, "scope") == "deliveryReportsQueue" for a in assignments)


# --- Event Grid --------------------------------------------------------------------------------


EVENTGRID = MODULES / "eventgrid.bicep"


def test_delivery_reports_reach_their_queue_with_an_identity_retries_and_dead_letters() -> None:
    (topic,) = _of_type(EVENTGRID, "Microsoft.EventGrid/systemTopics")
    assert _value(topic, "topicType") == "'Microsoft.Communication.CommunicationServices'"
    assert _value(topic, "source") == "communicationService.id"
    subscriptions = _of_type(EVENTGRID, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    (sub,) = [
        s for s in subscriptions if "'Microsoft.Communication.SMSDeliveryReportReceived'" in s
    ]
    delivery = _block(sub, "deliveryWithResourceIdentity")
    assert _value(_block(delivery, "identity"), "type") == "'UserAssigned'"
    destination = _block(delivery, "destination")
    assert _value(destination, "endpointType") == "'StorageQueue'"
    assert _value(destination, "queueName") == "deliveryReportsQueueName"
    assert "destination" not in _object_keys(sub.replace(delivery, "{}")), "no key-based delivery"
    retry = _block(sub, "retryPolicy")
    assert {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= _object_keys(retry)
    dead = _block(sub, "deadLetterWithResourceIdentity")
    assert _value(_block(dead, "deadLetterDestination"), "endpointType") == "'StorageBlob'"
    # The queue name passed in is the app's own constant.
    storage_text = _bicep(STORAGE)
    assert re.search(
        rf"(?m)^output deliveryReportsQueueName string = '{sms_storage.DELIVERY_REPORTS_QUEUE}'$",
        storage_text,
    )


def test_inbound_sms_webhook_is_created_after_deploy_by_both_hooks() -> None:
    inbound = app_functions()["inbound_webhook"]
    (trigger,) = [b for b in inbound["bindings"] if b["type"] == "httpTrigger"]
    assert trigger["route"] == "inbound"
    (topic_api,) = re.findall(r"'Microsoft\.EventGrid/systemTopics@([\w-]+)'", _bicep(EVENTGRID))
    outputs = _outputs(INFRA / "main.bicep")
    for hook in ("postdeploy.sh", "postdeploy.ps1"):
        text = (INFRA / "hooks" / hook).read_text(encoding="utf-8")
        for needle in (
            "az rest --method put",
            "/eventSubscriptions/",
            f"api-version={topic_api}",
            "WebHook",
            "Microsoft.Communication.SMSReceived",
            "/api/inbound?code=",
            "maxDeliveryAttempts",
            "eventTimeToLiveInMinutes",
            "deadLetterWithResourceIdentity",
            "UserAssigned",
            "function keys",
            "inbound_webhook",
        ):
            assert needle in text, f"{hook}: {needle}"
        # Every azd value the hook needs is an output of main.bicep (azd exports them).
        for name in set(re.findall(r"\b(AZURE_\w+|SERVICE_API_\w+|EVENT_GRID_\w+)", text)):
            assert name in outputs, f"{hook} reads {name}, which main.bicep does not output"


# --- alerts ------------------------------------------------------------------------------------


def test_alerts_cover_poison_queues_and_the_delivery_report_backlog() -> None:
    alerts = MODULES / "alerts.bicep"
    queries = [
        _value(body, "query")
        for body in _of_type(alerts, "Microsoft.Insights/scheduledQueryRules")
    ]
    assert any("MaxDequeueCount" in q and "-poison" in q for q in queries)
    assert any("Function.delivery_report" in q and "InsertionTime" in q for q in queries)
    metric_alerts = _of_type(alerts, "Microsoft.Insights/metricAlerts")
    metrics = {m.strip("'") for body in metric_alerts for m in _values(body, "metricName")}
    assert "QueueMessageCount" in metrics
    text = _bicep(alerts)
    assert "'DeadLetteredCount'" in text and "'DroppedEventCount'" in text
    main = _declarations(_bicep(INFRA / "main.bicep"), "module")
    assert main["alerts"][0] == "modules/alerts.bicep"


# --- azd layout and module wiring ----------------------------------------------------------------


def test_azure_yaml_declares_the_python_function_service_and_its_hooks() -> None:
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    api = azure["services"]["api"]
    assert (api["project"], api["language"], api["host"]) == (".", "python", "function")
    hook = azure["hooks"]["postdeploy"]
    for platform, suffix in (("posix", ".sh"), ("windows", ".ps1")):
        script = ROOT / hook[platform]["run"]
        assert script.suffix == suffix and script.is_file(), script
    site = _resources(FUNCTIONAPP)["site"][1]
    assert "'azd-service-name': 'api'" in site


def test_main_parameters_follow_azd_conventions() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    declared = _params(INFRA / "main.bicep")
    assert set(params) <= set(declared), set(params) - set(declared)
    required = {name for name, has_default in declared.items() if not has_default}
    assert required <= set(params), required - set(params)
    main = _bicep(INFRA / "main.bicep")
    assert re.search(r"(?m)^targetScope = 'subscription'$", main)
    assert "loadJsonContent('abbreviations.json')" in main
    assert "uniqueString(subscription().id, environmentName, location)" in main
    assert "'azd-env-name': environmentName" in main


@pytest.mark.parametrize("module", sorted(_declarations(_bicep(INFRA / "main.bicep"), "module")))
def test_module_wiring_matches_the_module_files(module: str) -> None:
    """What a Bicep build would catch: params passed, params required, outputs read."""
    main = _bicep(INFRA / "main.bicep")
    path, body, _ = _declarations(main, "module")[module]
    target = INFRA / path
    assert target.is_file(), path
    assert not path.startswith("br:"), "native resources only, no registry modules"
    declared = _params(target)
    passed = _object_keys(_block(body, "params"))
    assert passed <= set(declared), f"{path}: unknown params {passed - set(declared)}"
    missing = {p for p, has_default in declared.items() if not has_default} - passed
    assert not missing, f"{path}: required params not passed {missing}"
    read = set(re.findall(rf"\b{module}\.outputs\.(\w+)", main))
    assert read <= _outputs(target), f"{path}: no outputs {read - _outputs(target)}"


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    skips = [
        (path.name, m.group(1), m.group(2))
        for path in INFRA.rglob("*.bicep")
        for m in re.finditer(r"checkov:skip=(\w+)(?::(.*))?", path.read_text(encoding="utf-8"))
    ]
    assert skips, "the template is expected to document its Checkov exceptions"
    for name, check, reason in skips:
        assert reason and len(reason.strip()) >= 40, f"{name}: {check} skipped without a reason"
