"""Sending: accept messages over HTTP, read their status, dispatch them to ACS."""
