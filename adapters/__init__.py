"""Agent frameworks on the ledger, each an optional extra (`agentledger[langgraph]`, ...): the engine
never imports them."""
