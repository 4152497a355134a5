"""Inbound SMS from Event Grid (keywords, replies, relaying) and the conversations view."""
