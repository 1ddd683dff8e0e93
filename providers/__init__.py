"""Sandbox providers: the interface the effect handler calls (`base`), loaded by name from the
`agentledger.providers` entry point group (`registry`); the directory provider and the isolating
bubblewrap provider ship here, with the conformance suite every provider runs (`conformance`).
Providers depend on `agentledger.schemas` only, never on the engine or the handlers."""
