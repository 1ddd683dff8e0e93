"""What a decision may know besides its own boundary: values the service read or made first."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentledger.engine.outcomes import Mint
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.sandboxes import ProviderCapabilities


@dataclass(frozen=True)
class Context:
    mint: Mint
    catalog: dict[str, ProviderCapabilities] = field(default_factory=dict)
    project: ProjectState | None = None  # thread.create: the project (existence, caps)
    source_thread: ThreadState | None = None  # thread.create fork: the source thread, fresh from the log
    parent_location: tuple[str, str] | None = None  # spawn: (thread, project) of a parent living elsewhere
    sandbox: SandboxState | None = None  # a sandbox a command refers to, fresh from the log
    session_thread: ThreadState | None = None  # sandbox.exec: the thread of the session it names, fresh from the log
