"""The catalogue of event types, one module per stream.

Importing this package registers every type in :data:`puras_common.envelope.CATALOGUE`.
"""

from puras_common.envelope import CATALOGUE, Event, Payload, UnknownEventType, parse_event
from puras_common.events.agent import AgentStarted, StepCompleted, ToolCalled, ToolCompleted
from puras_common.events.drive import DriveObjectsDeleted, DriveObjectWritten, ObjectOrigin
from puras_common.events.jobs import (
    JobCancelled,
    JobCancelRequested,
    JobDispatched,
    JobFailed,
    JobKind,
    JobLogged,
    JobRetrying,
    JobSpec,
    JobStarted,
    JobSubagentStarted,
    JobSubmitted,
    JobSucceeded,
    JobUsageRecorded,
    SubagentSpec,
)
from puras_common.events.ledger import BalanceChanged, LedgerPosted
from puras_common.events.platform import (
    CreditGranted,
    DeploymentActivated,
    DeploymentBuilt,
    DeploymentCreated,
    DeploymentDeleted,
    FeedbackSubmitted,
    KeyCreated,
    KeyRevoked,
    SecretDeleted,
    SecretSet,
    SkillManifest,
    SkillpackUpdated,
    ToolManifest,
    WorkspaceCreated,
)
from puras_common.events.usage import UsageRecorded, UsageRecordedPayload
from puras_common.events.work import RunAgent, RunFunction, RunPayload

__all__ = [
    "CATALOGUE",
    "AgentStarted",
    "BalanceChanged",
    "CreditGranted",
    "DeploymentActivated",
    "DeploymentBuilt",
    "DeploymentCreated",
    "DeploymentDeleted",
    "DriveObjectWritten",
    "DriveObjectsDeleted",
    "Event",
    "FeedbackSubmitted",
    "JobCancelRequested",
    "JobCancelled",
    "JobDispatched",
    "JobFailed",
    "JobKind",
    "JobLogged",
    "JobRetrying",
    "JobSpec",
    "JobStarted",
    "JobSubagentStarted",
    "JobSubmitted",
    "JobSucceeded",
    "JobUsageRecorded",
    "KeyCreated",
    "KeyRevoked",
    "LedgerPosted",
    "ObjectOrigin",
    "Payload",
    "RunAgent",
    "RunFunction",
    "RunPayload",
    "SecretDeleted",
    "SecretSet",
    "SkillManifest",
    "SkillpackUpdated",
    "StepCompleted",
    "SubagentSpec",
    "ToolCalled",
    "ToolCompleted",
    "ToolManifest",
    "UnknownEventType",
    "UsageRecorded",
    "UsageRecordedPayload",
    "WorkspaceCreated",
    "parse_event",
]
