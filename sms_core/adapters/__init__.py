"""Adapters: Azure Tables and Queues, the ACS gateway, Event Grid decoding, the webhook poster."""
