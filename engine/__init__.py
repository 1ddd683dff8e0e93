"""Decisions, boundary models and the JetStream event store."""
