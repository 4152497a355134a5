"""The one settings class: app settings are environment variables (design.md section 4).

Read once per process with `get_settings()`, which `function_app.py` calls when the app loads:
a missing or invalid value raises `SettingsError` naming the setting, so a misconfigured
deployment fails at start-up with a readable message instead of on its first message. Every
value is checked there: formats, the keyword lists and replies (they must build a keyword
engine), the ACS connection string, and that storage and ACS are configured at all.
`load_settings()` checks formats only, for code that needs part of the settings.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, cast

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sms_core.errors import SettingsError
from sms_core.rules.keywords import KeywordEngine


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every app setting the bundle reads. Names are the environment variable names."""

    # App settings cannot be deleted in some portals, only emptied: an empty value is unset.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True,
                                      populate_by_name=False, env_ignore_empty=True)

    storage_connection_string: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage"))
    storage_account_name: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__accountName"))
    storage_table_service_uri: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__tableServiceUri"))
    storage_queue_service_uri: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__queueServiceUri"))
    storage_blob_service_uri: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__blobServiceUri"))
    storage_credential: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__credential"))
    storage_client_id: str | None = Field(
        None, validation_alias=_alias("AzureWebJobsStorage__clientId"))

    acs_connection_string: str | None = Field(
        None, validation_alias=_alias("ACS_CONNECTION_STRING"))
    acs_endpoint: str | None = Field(None, validation_alias=_alias("ACS_ENDPOINT"))

    default_from: str | None = Field(None, validation_alias=_alias("SMS_DEFAULT_FROM"))
    sender_rate_per_minute: int = Field(
        200, gt=0, le=1_000_000, validation_alias=_alias("SMS_SENDER_RATE_PER_MINUTE"))
    optout_scope: Literal["sender", "global"] = Field(
        "sender", validation_alias=_alias("SMS_OPTOUT_SCOPE"))
    auto_reply: bool = Field(True, validation_alias=_alias("SMS_AUTO_REPLY"))
    help_text: str = Field(
        "Reply STOP to unsubscribe or START to resubscribe. Msg & data rates may apply.",
        min_length=1, validation_alias=_alias("SMS_HELP_TEXT"))
    optout_keywords: str | None = Field(
        None, validation_alias=_alias("SMS_OPTOUT_KEYWORDS"))
    optin_keywords: str | None = Field(None, validation_alias=_alias("SMS_OPTIN_KEYWORDS"))
    help_keywords: str | None = Field(None, validation_alias=_alias("SMS_HELP_KEYWORDS"))
    optout_reply: str | None = Field(None, validation_alias=_alias("SMS_OPTOUT_REPLY"))
    optin_reply: str | None = Field(None, validation_alias=_alias("SMS_OPTIN_REPLY"))
    dlr_timeout_hours: float = Field(
        72, gt=0, le=24 * 30, validation_alias=_alias("SMS_DLR_TIMEOUT_HOURS"))
    # A saved audience larger than this is prepared by background jobs, `..._CHUNK` members a
    # job: a request must end well within Azure's ~230 s front-end limit on any plan.
    campaign_prepare_inline_max: int = Field(
        10_000, ge=0, le=1_000_000, validation_alias=_alias("SMS_CAMPAIGN_PREPARE_INLINE_MAX"))
    campaign_prepare_chunk: int = Field(
        10_000, ge=100, le=100_000, validation_alias=_alias("SMS_CAMPAIGN_PREPARE_CHUNK"))
    app_webhook_url: str | None = Field(None, validation_alias=_alias("SMS_APP_WEBHOOK_URL"))
    app_webhook_secret: str | None = Field(
        None, validation_alias=_alias("SMS_APP_WEBHOOK_SECRET"))
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=_alias("SMS_LOG_FORMAT"))

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("default_from")
    @classmethod
    def _sender_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sms_core.rules.phone import InvalidPhoneNumber, sender_to_e164_or_shortcode

        try:
            return sender_to_e164_or_shortcode(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(exc.reason) from exc

    @field_validator("app_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("acs_connection_string")
    @classmethod
    def _acs_connection_string(cls, value: str | None) -> str | None:
        if value is not None:
            parse_acs_connection_string(value)
        return value

    @model_validator(mode="after")
    def _keywords(self) -> Settings:
        try:
            self.keyword_engine()
        except ValueError as exc:
            raise ValueError(
                "keyword settings (SMS_OPTOUT_KEYWORDS, SMS_OPTIN_KEYWORDS, SMS_HELP_KEYWORDS, "
                f"SMS_OPTOUT_REPLY, SMS_OPTIN_REPLY, SMS_HELP_TEXT) do not work together: {exc}"
            ) from exc
        return self

    @staticmethod
    def word_list(value: str | None) -> tuple[str, ...]:
        """A comma-separated setting as a tuple of trimmed, non-empty words."""
        return tuple(w.strip() for w in (value or "").split(",") if w.strip())

    def keyword_engine(self) -> KeywordEngine:
        """The keyword engine these settings describe (extra keywords, replies, HELP text)."""
        return KeywordEngine(help_text=self.help_text,
                             extra_opt_out=self.word_list(self.optout_keywords),
                             extra_opt_in=self.word_list(self.optin_keywords),
                             extra_help=self.word_list(self.help_keywords),
                             opt_out_reply=self.optout_reply, opt_in_reply=self.optin_reply)

    def acs_credentials(self) -> tuple[str, str] | None:
        """(endpoint, access key) of ACS_CONNECTION_STRING, or None when it is not set."""
        if self.acs_connection_string is None:
            return None
        return parse_acs_connection_string(self.acs_connection_string)

    def require_app_settings(self) -> Settings:
        """Check what the app cannot run without: storage and ACS (SettingsError otherwise)."""
        if not self.has_storage:
            raise SettingsError("Invalid app settings: AzureWebJobsStorage is not set (a "
                                "connection string, or AzureWebJobsStorage__accountName)")
        if not (self.acs_connection_string or self.acs_endpoint):
            raise SettingsError("Invalid app settings: neither ACS_CONNECTION_STRING nor "
                                "ACS_ENDPOINT is set")
        return self

    @property
    def has_storage(self) -> bool:
        """True when some form of AzureWebJobsStorage is configured."""
        return bool(self.storage_connection_string or self.storage_account_name
                    or (self.storage_table_service_uri and self.storage_queue_service_uri))


_ENV_NAMES = {
    name: str(field.validation_alias.choices[0])  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings from the environment (and explicit overrides)."""
    try:
        factory = cast(Any, Settings)
        given = {_ENV_NAMES.get(k, k): v for k, v in overrides.items()
                 if not (isinstance(v, str) and not v.strip())}
        return cast(Settings, factory(**given))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"]:  # a check of several settings names them in its message
                problems.append(message)
                continue
            loc = str(err["loc"][0])
            problems.append(f"{_ENV_NAMES.get(loc, loc)}: {message}")
        raise SettingsError("Invalid app settings: " + "; ".join(problems)) from None


def parse_acs_connection_string(value: str) -> tuple[str, str]:
    """(endpoint, access key) from `endpoint=...;accesskey=...`, keeping the endpoint's scheme.

    The SDK's own parser drops the scheme and forces https, which rules out the local emulator.
    """
    parts: dict[str, str] = {}
    for element in value.split(";"):
        key, sep, val = element.partition("=")
        if sep:
            parts[key.strip().lower()] = val.strip()
    endpoint, key = parts.get("endpoint", ""), parts.get("accesskey", "")
    if not endpoint or not key:
        raise ValueError("must look like "
                         "'endpoint=https://<resource>.communication.azure.com/;accesskey=<key>'")
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    return endpoint.rstrip("/"), key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once and checked in full (see the module docstring)."""
    return load_settings().require_app_settings()
