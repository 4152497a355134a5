"""The one settings class: app settings are environment variables (design.md section 4).

Read once per process with `get_settings()`; a missing or invalid value raises `SettingsError`
naming the setting, so a misconfigured deployment fails at start-up with a readable message.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, cast

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sms_core.errors import SettingsError


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
    app_webhook_url: str | None = Field(None, validation_alias=_alias("SMS_APP_WEBHOOK_URL"))
    app_webhook_secret: str | None = Field(
        None, validation_alias=_alias("SMS_APP_WEBHOOK_SECRET"))

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

    @staticmethod
    def word_list(value: str | None) -> tuple[str, ...]:
        """A comma-separated setting as a tuple of trimmed, non-empty words."""
        return tuple(w.strip() for w in (value or "").split(",") if w.strip())

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
            loc = str(err["loc"][0]) if err["loc"] else "?"
            setting = _ENV_NAMES.get(loc, loc)
            problems.append(f"{setting}: {err['msg']}")
        raise SettingsError("Invalid app settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
