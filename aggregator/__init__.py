"""Shared core of the aggregator: settings, the event contract, broker topology, the store."""
