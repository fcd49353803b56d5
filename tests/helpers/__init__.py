"""Shared pieces of the test suite: apps and providers, loopback servers, row seeding, process helpers."""
