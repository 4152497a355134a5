"""Delivery reports from ACS, and the timers that expire and reconcile them."""
