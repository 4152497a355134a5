"""Unit tests of sms_core.adapters."""
