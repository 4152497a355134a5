"""Unit tests of sms_core.models."""
