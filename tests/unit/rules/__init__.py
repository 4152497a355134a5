"""Unit tests of sms_core.rules."""
