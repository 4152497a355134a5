"""Use cases: accept, dispatch, delivery reports, inbound, opt-outs, campaigns, analytics."""
