"""The project boundary: existence and the delegation caps every thread copies at creation."""

from __future__ import annotations

from eventsourcing.domain import event

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.schemas.common import ProjectConfig
from agentledger.schemas.events import ProjectCreated


class ProjectState(BoundaryModel):
    ID_PREFIX = "prj_"
    ID_FIELD = "project_id"
    project_id: str
    name: str
    config: ProjectConfig

    def __init__(self, tenant_id: str, boundary: str, project_id: str) -> None:
        super().__init__(tenant_id, boundary)
        self.project_id = project_id
        self.name = ""
        self.config = ProjectConfig()

    @event(ProjectCreated)
    def project_created(self, name: str, config: ProjectConfig) -> None:
        self.exists = True
        self.name = name
        self.config = config
