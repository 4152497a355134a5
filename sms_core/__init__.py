"""Shared domain and adapters of the SMS bundle. Never imports azure.functions."""
