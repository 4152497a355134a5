"""Campaigns: prepare, confirm, fan out, schedule; saved audiences and templates."""
