"""The `agentledger` command line: serve the engine, send commands and queries, tail and replay the log."""
