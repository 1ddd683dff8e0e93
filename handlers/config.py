"""What one engine replica or effect handler is configured with (`agentledger serve` / `effects`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.identity import TENANTS_BUCKET
from agentledger.handlers.fairness import Shares
from agentledger.handlers.observability.connection import Reconnect
from agentledger.providers.base import ProviderConfig


@dataclass
class EngineConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "ledger"
    stream: str = "LEDGER"
    replicas: int = 1
    queue_group: str = "agentledger"
    max_workers: int = 64  # requests in progress at once, per subject pattern (commands, queries)
    tenant_workers: int | None = None  # of which one tenant may hold at most this many; None: 3/4 of them
    tenant_query_workers: int = 16  # of the query workers, one tenant at most this many (queries need the CPU, not
    # waiting: fewer at once keep the event loop free to read the next tenant's request sooner)
    cache_size: int = 4_000  # boundary models kept in memory; others are loaded from the log on demand
    cache_bytes: int | None = 256 * 1024 * 1024  # and their estimated size together (None: no bound)
    snapshot_every: int = 100  # events on a boundary between its snapshots (a load reads at most about this tail)
    decide_within: float = 2.0  # seconds after its arrival a command may still be decided; later: `unavailable`
    exec_reply_within: float = 3.0  # seconds after its arrival a `sandbox.exec` reply waits for the outcome
    sandbox_dir: Path | None = None  # run the local sandbox effect handler here; None: effects run elsewhere
    sandbox_commands: tuple[str, ...] = ()  # programs a sandbox may run (argv[0]); none by default
    sandbox_repos: tuple[str, ...] = ()  # directories whose git repositories a sandbox may check out
    sandbox_provider: str = "auto"  # an `agentledger.providers` entry point; auto: bubblewrap, else directory
    sandbox_settings: ProviderConfig | None = None  # env, network, limits, private paths (docs/sandboxes.md)
    reconcile_every: float = 60.0  # seconds between the sandbox reconciler's passes (one at start)
    process_manager: bool = True
    pm_concurrency: int = 8  # tenants whose thread events the process manager handles at once (each in log order)
    pm_window: int = 4_096  # thread events it reads ahead, so each tenant's next one is in reach
    pm_lease_ttl: float = 10.0  # one replica's process manager works at a time; another takes over this long after
    worker_ack_wait: float = 30.0
    reconnect: Reconnect = field(default_factory=Reconnect)  # past its budget a lost NATS ends the process
    worker_retry_delay: float = 0.05  # first backoff of a failing worker event (doubling, at most 5 s)
    worker_max_attempts: int = 8  # a worker event failing this often is parked (`agentledger workers parked`)
    worker_check_every: float = 5.0  # seconds between a worker's checks that its durable consumer still exists
    effects_concurrency: int = 16  # sandboxes the effect handler works on at once (each one's requests in order)
    effects_window: int = 4_096  # sandbox requests it reads ahead, so each tenant's next one is in reach of a turn
    creds: str | Path | None = None  # this replica's NATS credentials (.creds); None: the server needs none
    tenants_bucket: str = TENANTS_BUCKET  # where `tenant add` records which account is which tenant
    subjects: Subjects = field(init=False)

    def __post_init__(self) -> None:
        self.subjects = Subjects(self.prefix)

    @property
    def shares(self) -> Shares:
        """How each subject pattern's workers are shared among tenants (`handlers.fairness`)."""
        return Shares.of(self.max_workers, self.tenant_workers)

    @property
    def query_shares(self) -> Shares:
        return Shares.of(self.max_workers, min(self.tenant_query_workers, self.max_workers))

    @property
    def servers(self) -> list[str]:
        """`nats_url` may list a cluster's servers, comma-separated (nats-py wants a list)."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


def connect_options(config: EngineConfig) -> dict[str, Any]:
    """`nats.connect` keywords for this process's credentials."""
    return {} if config.creds is None else {"user_credentials": str(config.creds)}
