"""`agentledger ui`: a web timeline of a tenant's threads, read through the engine's queries."""
