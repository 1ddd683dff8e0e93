"""Sandbox providers: one protocol, and the real local provider that ships with the engine."""
