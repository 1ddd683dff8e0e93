"""NATS-facing edges: FastStream subscribers for commands and queries, and the engine runtime."""
