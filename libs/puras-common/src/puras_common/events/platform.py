"""Events of the PLATFORM stream: workspaces, deployments, secrets (names only), keys, drive."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from puras_common import streams
from puras_common.envelope import Event, Payload
from puras_common.events.jobs import JobKind, RetryPolicy
from puras_common.money import Micros


class _PlatformEvent(Event):
    stream: ClassVar = streams.PLATFORM


class WorkspaceCreatedPayload(Payload):
    slug: str
    name: str


class WorkspaceCreated(_PlatformEvent):
    """A tenant exists."""

    subject_pattern: ClassVar = "workspace.{workspace_id}.created"
    type: Literal["workspace.created"] = "workspace.created"
    payload: WorkspaceCreatedPayload


class CreditGrantedPayload(Payload):
    amount_micros: Micros
    note: str = ""


class CreditGranted(_PlatformEvent):
    """An operator gave a workspace credit; billing turns it into a ledger entry."""

    subject_pattern: ClassVar = "workspace.{workspace_id}.credit_granted"
    type: Literal["workspace.credit_granted"] = "workspace.credit_granted"
    payload: CreditGrantedPayload


class KeyCreatedPayload(Payload):
    """A key's public description: never its secret."""

    key_id: UUID
    kind: Literal["secret", "publishable"]
    prefix: str
    name: str = ""
    skillpack: str = "default"
    allowed_skills: tuple[str, ...] | None = None
    daily_cap_micros: Micros | None = None


class KeyCreated(_PlatformEvent):
    """An API key was minted for a workspace."""

    subject_pattern: ClassVar = "key.{workspace_id}.created"
    type: Literal["key.created"] = "key.created"
    payload: KeyCreatedPayload


class KeyRevokedPayload(Payload):
    key_id: UUID
    prefix: str


class KeyRevoked(_PlatformEvent):
    """An API key was revoked; requests with it are refused from now on."""

    subject_pattern: ClassVar = "key.{workspace_id}.revoked"
    type: Literal["key.revoked"] = "key.revoked"
    payload: KeyRevokedPayload


class ToolManifest(Payload):
    """A user tool declared in a skill's ``tools:`` list."""

    name: str
    description: str
    entrypoint: str
    input_schema: dict[str, Any] | bool | None = None
    output_schema: dict[str, Any] | bool | None = None


class ScheduleManifest(Payload):
    """A schedule declared in a skill's ``skill.yaml``: it fires while its deployment is the
    skillpack's active one."""

    name: str
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    missed: Literal["skip", "catch_up"] = "skip"
    catch_up_limit: int = 0


class SkillManifest(Payload):
    """One skill of a deployment, as validated from its ``skill.yaml``."""

    name: str
    description: str
    kind: JobKind
    entrypoint: str
    model: str | None = None
    disable_bash: bool = False
    input_schema: dict[str, Any] | bool | None = None
    output_schema: dict[str, Any] | bool | None = None
    timeout_seconds: int | None = None
    retries: RetryPolicy | None = None
    """Deterministic skills only: retry a failed job (``retries:`` in skill.yaml)."""
    tools: tuple[ToolManifest, ...] = ()
    network: bool = True
    """Whether the skill's code may use the network (``network: false`` in skill.yaml cuts it off)."""
    schedules: tuple[ScheduleManifest, ...] = ()


class DeploymentCreatedPayload(Payload):
    deployment_id: UUID
    skillpack_id: UUID
    skillpack_slug: str
    visibility: Literal["private", "public"] = "private"
    version: int
    notes: str = ""
    status: Literal["building", "ready", "failed"]
    skills: tuple[SkillManifest, ...]
    bundle_sha256: str
    bundle_bytes: int


class DeploymentCreated(_PlatformEvent):
    """A bundle was accepted and stored as a new deployment of a skillpack."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.created"
    type: Literal["deployment.created"] = "deployment.created"
    payload: DeploymentCreatedPayload


class DeploymentActivatedPayload(Payload):
    deployment_id: UUID
    skillpack_id: UUID
    skillpack_slug: str
    version: int
    previous_deployment_id: UUID | None = None
    activation: int
    """Counts activations and ramps of the skillpack: the pointer with the highest one is current."""
    reason: Literal["activate", "promote", "rollback"] = "activate"
    """Why: an activation, the promotion of a ramped deployment, or a rollback (which may keep
    the pointer and only end a ramp)."""


class DeploymentActivated(_PlatformEvent):
    """New jobs of the skillpack now run this deployment (all of them: a ramp, if any, ended)."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.activated"
    type: Literal["deployment.activated"] = "deployment.activated"
    payload: DeploymentActivatedPayload


class DeploymentRampedPayload(Payload):
    skillpack_id: UUID
    skillpack_slug: str
    deployment_id: UUID
    """The deployment being ramped up (the canary)."""
    version: int
    stable_deployment_id: UUID
    """The active deployment, which keeps the rest of the traffic."""
    stable_version: int
    traffic_percent: int
    """1–99: the share of unpinned jobs the canary receives."""
    activation: int
    """The same counter as :class:`DeploymentActivatedPayload`'s: the highest one is current."""


class DeploymentRamped(_PlatformEvent):
    """New unpinned jobs of the skillpack are split: ``traffic_percent`` % run the ramped
    deployment, the rest the active one (by a stable hash of their routing key, else at random)."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.ramped"
    type: Literal["deployment.ramped"] = "deployment.ramped"
    payload: DeploymentRampedPayload


class DeploymentDeletedPayload(Payload):
    deployment_id: UUID
    skillpack_id: UUID


class DeploymentDeleted(_PlatformEvent):
    """A deployment that is not active was deleted."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.deleted"
    type: Literal["deployment.deleted"] = "deployment.deleted"
    payload: DeploymentDeletedPayload


class FeedbackSubmittedPayload(Payload):
    job_id: UUID
    end_user_id: str
    rating: int
    comment: str


class FeedbackSubmitted(_PlatformEvent):
    """Someone rated or commented on a job's result (one row per job and end user)."""

    subject_pattern: ClassVar = "feedback.{workspace_id}.submitted"
    type: Literal["feedback.submitted"] = "feedback.submitted"
    payload: FeedbackSubmittedPayload


class DeploymentBuiltPayload(Payload):
    deployment_id: UUID
    skillpack_id: UUID
    status: Literal["ready", "failed"]
    requirements_sha256: str
    error: str | None = None
    """pip's message when the build failed."""


class DeploymentBuilt(_PlatformEvent):
    """A deployment that was ``building`` (its requirements.txt being installed) is now ready or failed."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.built"
    type: Literal["deployment.built"] = "deployment.built"
    payload: DeploymentBuiltPayload


class SkillpackUpdatedPayload(Payload):
    skillpack_id: UUID
    skillpack_slug: str
    visibility: Literal["private", "public"]
    revision: int
    """Counts changes of the skillpack: the state with the highest one is current."""


class SkillpackUpdated(_PlatformEvent):
    """A skillpack's settings (its visibility) changed."""

    subject_pattern: ClassVar = "deployment.{workspace_id}.skillpack_updated"
    type: Literal["deployment.skillpack_updated"] = "deployment.skillpack_updated"
    payload: SkillpackUpdatedPayload


class SecretSetPayload(Payload):
    skillpack_id: UUID
    skillpack_slug: str
    name: str
    created: bool
    """False when an existing secret's value was replaced."""


class SecretSet(_PlatformEvent):
    """A skillpack secret was created or overwritten (its name only: values never leave the
    deployments service except to the job that runs)."""

    subject_pattern: ClassVar = "secret.{workspace_id}.set"
    type: Literal["secret.set"] = "secret.set"
    payload: SecretSetPayload


class SecretDeletedPayload(Payload):
    skillpack_id: UUID
    skillpack_slug: str
    name: str


class SecretDeleted(_PlatformEvent):
    """A skillpack secret was deleted."""

    subject_pattern: ClassVar = "secret.{workspace_id}.deleted"
    type: Literal["secret.deleted"] = "secret.deleted"
    payload: SecretDeletedPayload


__all__ = [
    "CreditGranted",
    "DeploymentActivated",
    "DeploymentBuilt",
    "DeploymentCreated",
    "DeploymentDeleted",
    "DeploymentRamped",
    "FeedbackSubmitted",
    "KeyCreated",
    "KeyRevoked",
    "Micros",
    "ScheduleManifest",
    "SecretDeleted",
    "SecretSet",
    "SkillManifest",
    "SkillpackUpdated",
    "ToolManifest",
    "WorkspaceCreated",
]
