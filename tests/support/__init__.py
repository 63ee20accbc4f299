"""Helpers the tests share: the broker, processes, polling."""
