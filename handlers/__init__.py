"""NATS-facing edges: request subscriptions for commands and queries, and the engine runtime."""
