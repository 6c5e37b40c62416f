"""The values reconcile reasons about: frozen dataclasses and enums, and nothing that does I/O.

Desired state (Manifest, LayerSpec, Settings, Artifact), recorded state (Lock, LockEntry),
observed state (RemoteVersion and the rest of `observed`) and the decision (Action, Reason,
FieldChange, CodeLocation, Change: an Address and the Details of its action; Plan). A Plan is
a plain value: comparable, serialisable, free of clients and open files.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

# The details of each action of a change: their own room (see details), named here too.
from reconciler.details import Alignment as Alignment
from reconciler.details import DeleteDetails as DeleteDetails
from reconciler.details import Details as Details
from reconciler.details import ForgetDetails as ForgetDetails
from reconciler.details import FunctionDetails as FunctionDetails
from reconciler.details import GrantDetails as GrantDetails
from reconciler.details import ParameterDetails as ParameterDetails
from reconciler.details import PublishDetails as PublishDetails
from reconciler.details import RecordDetails as RecordDetails

# What AWS reports and where code is kept: their own room (see observed), named here too.
from reconciler.observed import CLOUDFORMATION_STACK_TAG as CLOUDFORMATION_STACK_TAG
from reconciler.observed import CodeLocation as CodeLocation
from reconciler.observed import CodeStorage as CodeStorage
from reconciler.observed import FunctionConfig as FunctionConfig
from reconciler.observed import ParameterValue as ParameterValue
from reconciler.observed import RemoteContent as RemoteContent
from reconciler.observed import RemoteVersion as RemoteVersion
from reconciler.observed import S3Object as S3Object
from reconciler.observed import StoredObject as StoredObject
from reconciler.observed import UpdateStatus as UpdateStatus
from reconciler.observed import UploadRoute as UploadRoute
from reconciler.observed import artifact_key as artifact_key

# Lambda's own limits (also in the schema, where botocore's model is the source of truth for
# the field limits; these two are service quotas, not model constraints).
MAX_DIRECT_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 262_144_000


class SourceKind(enum.Enum):
    """Where a layer's content comes from."""

    PATH = "path"
    ZIP = "zip"
    S3 = "s3"
    # A Python layer the tool builds itself from a lock file (content.lock).
    LOCK = "lock"


class Action(enum.Enum):
    """What apply does for one layer in one region. Apply switches on this alone."""

    CREATE = "create"
    PUBLISH = "publish"
    NOOP = "noop"
    DELETE = "delete"
    GRANT = "grant"
    # The state stops recording a layer and region the manifest no longer names; its
    # versions stay in Lambda (apply changes nothing there).
    FORGET = "forget"
    # A consumer function's Layers set to use the layer's latest version (UpdateFunction-
    # Configuration), and the SSM parameter that names the latest version (PutParameter).
    UPDATE_FUNCTION = "update_function"
    PUT_PARAMETER = "put_parameter"


class Reason(enum.Enum):
    """Why an action was chosen. For people only: a reason never changes what apply does."""

    NEW_LAYER = "new_layer"
    CONTENT_CHANGED = "content_changed"
    SETTINGS_CHANGED = "settings_changed"
    REMOTE_DRIFT = "remote_drift"
    ADOPTED = "adopted"
    RETENTION = "retention"
    GRANTS_CHANGED = "grants_changed"
    ALIGN_VERSIONS = "align_versions"
    # A delete of an align_versions filler that an apply left (killed, or its deletes
    # failed) and no apply holds the lock for.
    STRAY_FILLER = "stray_filler"
    # A `forget`: the state records a layer and region that the manifest no longer names.
    NOT_IN_MANIFEST = "not_in_manifest"
    # A consumer (function or parameter) moves because the layer gets a new version here;
    # a function that did not use the layer at all gets it appended.
    LAYER_PUBLISHED = "layer_published"
    CONSUMER_ADDED = "consumer_added"


@dataclass(frozen=True)
class Grant:
    """One principal a published version is shared with: `account` (a 12-digit ID),
    `organization` (an AWS Organizations ID, principal `*` with an OrganizationId condition)
    or `public` (principal `*`: anyone)."""

    kind: str
    principal: str

    @property
    def statement_id(self) -> str:
        """The deterministic statement ID of this grant, so that a retried grant cannot add
        a second statement."""
        if self.kind == "public":
            return "reconcile-public"
        return f"reconcile-{self.kind}-{self.principal}"


@dataclass(frozen=True)
class Settings:
    """The published settings of a layer version, normalised so that equal means equal.

    Lambda treats an absent description or license as empty and runtimes and architectures as
    sets, so they are held as "" and sorted tuples.
    """

    description: str = ""
    compatible_runtimes: tuple[str, ...] = ()
    compatible_architectures: tuple[str, ...] = ()
    license_info: str = ""

    @classmethod
    def normalised(
        cls,
        *,
        description: str | None,
        compatible_runtimes: list[str] | tuple[str, ...] | None,
        compatible_architectures: list[str] | tuple[str, ...] | None,
        license_info: str | None,
    ) -> Settings:
        """Build Settings from raw values, treating None as empty and sorting the lists."""
        return cls(
            description=description or "",
            compatible_runtimes=tuple(sorted(set(compatible_runtimes or ()))),
            compatible_architectures=tuple(sorted(set(compatible_architectures or ()))),
            license_info=license_info or "",
        )

    def as_dict(self) -> dict[str, object]:
        """The settings as a JSON-able dict with lists, in field order."""
        return {
            "description": self.description,
            "compatible_runtimes": list(self.compatible_runtimes),
            "compatible_architectures": list(self.compatible_architectures),
            "license_info": self.license_info,
        }

    def digest(self, grants: tuple[Grant, ...] = ()) -> str:
        """Hex SHA-256 of the canonical JSON of the settings and the grants the version is
        shared with (recorded in the lockfile). No grants digests as an empty list, so a
        version recorded before sharing existed keeps its digest."""
        document = {
            **self.as_dict(),
            "grants": sorted([grant.kind, grant.principal] for grant in grants),
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ContentSpec:
    """A layer's content source as written in the manifest (paths relative to its folder)."""

    kind: SourceKind
    path: str | None = None
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    zip: str | None = None
    normalize: bool = False
    s3_bucket: str | None = None
    s3_key: str | None = None
    s3_object_version: str | None = None
    # A built layer (`lock`): the lock file, the wheel folders looked in first, the index,
    # the packages left out, and the layer's runtimes and architectures (its build target is
    # part of what its content is, so a change of them is a change of content).
    lock: str | None = None
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    exclude_packages: tuple[str, ...] = ()
    build_runtimes: tuple[str, ...] = ()
    build_architectures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Location:
    """Where a value stands in the manifest (1-based)."""

    line: int
    column: int


@dataclass(frozen=True)
class ContentRef:
    """A local file or folder the manifest names (`content.path` or `content.zip`) and where
    it is named: what `validate` checks on disk, even when other parts are invalid."""

    field_path: tuple[str | int, ...]
    kind: SourceKind
    relpath: str
    location: Location


@dataclass(frozen=True)
class Consumers:
    """The functions that must use a layer's latest version: those named (a name, or an ARN
    naming its region) and every function carrying all of `tags` (key, value pairs, sorted);
    a function CloudFormation manages is refused unless `allow_managed`."""

    functions: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    allow_managed: bool = False


@dataclass(frozen=True)
class LayerSpec:
    """One desired layer: its manifest key, the Lambda layer name, its settings and content."""

    key: str
    name: str
    settings: Settings
    content: ContentSpec
    location: Location
    arn_region: str | None = None
    arn_account: str | None = None
    upload: str | None = None
    # None: the layer does not manage who may use its versions (grants are left alone);
    # a tuple, even empty: exactly these grants on every version apply publishes and on the
    # current latest one.
    share: tuple[Grant, ...] | None = None
    retain: int | None = None
    align_versions: bool = False
    # The binary check of a zip about to be published (CONTRACT "Binary compatibility").
    check_binaries: bool = True
    # The functions that must use this layer's latest version (None: none are managed).
    consumers: Consumers | None = None
    # The SSM String parameter holding the latest LayerVersionArn in each region, `{layer}`
    # already replaced (None: no parameter).
    parameter: str | None = None

    @property
    def grants(self) -> tuple[Grant, ...]:
        """The grants to give each published version (none when unmanaged)."""
        return self.share or ()


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. `locations` maps a field path like ("layers", "x", "content") to
    where it stands, so that later stages can point at the line that caused a problem."""

    file: str
    version: int
    regions: tuple[str, ...]
    layers: tuple[LayerSpec, ...]
    artifact_bucket: str | None = None
    artifact_buckets: tuple[tuple[str, str], ...] = ()  # region -> bucket, when a map
    state: str | None = None
    locations: Mapping[tuple[str | int, ...], Location] = field(
        default_factory=dict, compare=False, repr=False
    )
    content_refs: tuple[ContentRef, ...] = field(default=(), compare=False, repr=False)
    sha256: str = ""  # of the manifest's bytes: a saved plan's basis names it

    def locate(self, path: tuple[str | int, ...]) -> Location:
        """The location of `path`, or of its nearest located ancestor."""
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), Location(1, 1))

    def layer(self, key: str) -> LayerSpec:
        """The layer with manifest key `key` (KeyError if absent)."""
        for spec in self.layers:
            if spec.key == key:
                return spec
        raise KeyError(key)


class Entry(NamedTuple):
    """One file to put in a layer zip: where it goes, where its bytes come from.

    `source` is opaque to the core: the shell that produced the entry knows how to open it
    (a file path, or a member of a zip). A symlink entry has `link_target` and no bytes.
    (A named tuple, not a frozen dataclass: a walk makes one per file, and a tuple is made
    faster.)
    """

    arcname: str
    source: str
    size: int
    executable: bool
    link_target: str | None = None


@dataclass(frozen=True)
class BuildInfo:
    """What a layer built from a lock holds, for the plan to show and the state to record:
    the build `target` (`python3.12 x86_64 (Amazon Linux 2023, glibc 2.34)`, several joined
    by `; `), the packages in it (name, version, sorted by name), the ones the lock lists but
    the layer leaves out and why (`exclude_packages`, or not needed on the target by its
    markers), the digest of the build's inputs, and, once the zip is built, each package's
    size unzipped. `recorded` is the package list the state recorded for the layer and
    region (None: none recorded), for the plan's `numpy 2.1.0 -> 2.2.6`."""

    target: str
    inputs_sha256: str
    packages: tuple[tuple[str, str], ...]
    left_out: tuple[tuple[str, str], ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()
    recorded: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class Artifact:
    """A layer's content identity. `fingerprint` is always known (computed without zipping);
    the zip digests are known once the zip is built (or recorded in the lockfile)."""

    fingerprint: str
    code_sha256: str | None = None
    content_sha256: str | None = None
    code_size: int | None = None
    zip_path: str | None = None
    unzipped_size: int | None = None
    # The files and folders of a folder layer that git ignores, left out (a folder counts
    # once: it is never descended). The plan says how many.
    git_ignored: int = 0
    # A layer built from a lock: what the build holds (None for every other kind).
    build: BuildInfo | None = None


@dataclass(frozen=True)
class LockEntry:
    """What the lockfile records for one layer in one region: the version last published
    (or adopted) and the content and settings it was published with, and the manifest that
    manages it (its path below the repository root; "" for an entry written before
    ownership was recorded). The owner is not part of an entry's equality: it says who may
    change the entry, not what was published, so a plan's `record` is never made only to
    write it (apply writes it with every entry it writes anyway)."""

    fingerprint: str
    content_sha256: str
    code_sha256: str
    code_size: int
    version: int
    layer_version_arn: str
    settings_sha256: str
    manifest: str = field(default="", compare=False)
    # A layer built from a lock: the digest of the build's inputs and the packages (name,
    # version) it held ("" and () for every other kind).
    inputs_sha256: str = ""
    packages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Lock:
    """The whole lockfile: entries keyed by (layer key, region); its `lineage` (made once,
    on the first write: "" when unknown, a lockfile older than lineages) and `serial` (raised
    on every write: statefile.next_write), which `state push` compares."""

    entries: Mapping[tuple[str, str], LockEntry] = field(default_factory=dict)
    lineage: str = ""
    serial: int = 0

    def get(self, layer: str, region: str) -> LockEntry | None:
        """The entry for `layer` in `region`, if recorded."""
        return self.entries.get((layer, region))

    def with_entry(self, layer: str, region: str, *, entry: LockEntry) -> Lock:
        """A new Lock with `entry` recorded for `layer` in `region`."""
        entries = dict(self.entries)
        entries[(layer, region)] = entry
        return Lock(entries=entries, lineage=self.lineage, serial=self.serial)

    def without(self, layer: str, region: str) -> Lock:
        """A new Lock that no longer records `layer` in `region`."""
        entries = {key: entry for key, entry in self.entries.items()
                   if key != (layer, region)}
        return Lock(entries=entries, lineage=self.lineage, serial=self.serial)


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between the latest remote version and the desired layer.

    Lists carry what is `added` and `removed`; scalars carry `before` and `after`.
    """

    field: str
    before: object = None
    after: object = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desired:
    """The version apply would publish: where its code comes from (the content fingerprint,
    the zip's digests and size, which apply checks a rebuilt zip against), its settings and
    grants. `unzipped_size` is the content's size once extracted (Lambda's other limit)."""

    settings: Settings
    fingerprint: str
    code_sha256: str | None
    content_sha256: str | None
    code_size: int | None
    grants: tuple[Grant, ...] = ()
    source: SourceKind = SourceKind.PATH
    unzipped_size: int | None = None
    build: BuildInfo | None = None  # a layer built from a lock


class ChangeKind(enum.Enum):
    """What a change is about (its address's kind): a layer, a consumer function
    (`update_function`) or an SSM parameter (`put_parameter`)."""

    LAYER = "layer"
    FUNCTION = "function"
    PARAMETER = "parameter"


# The version of a layer's ARN in a consumer change's `after` when the layer is published in
# the same apply: apply puts the number it publishes (and records) in its place.
PUBLISHED = "$PUBLISHED"


def unversioned(layer_version_arn: str) -> str:
    """A layer version's ARN without its version: the layer's ARN."""
    return layer_version_arn.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Address:
    """Which thing a change is about: its kind, the layer (its manifest key) and region, and
    for the coming kinds the function or parameter. A layer's deletes share its address (the
    version each deletes tells them apart)."""

    kind: ChangeKind
    layer: str
    region: str
    function: str | None = None
    parameter: str | None = None

    @classmethod
    def of_layer(cls, layer: str, region: str) -> Address:
        """The address of layer `layer` (its manifest key) in `region`."""
        return cls(kind=ChangeKind.LAYER, layer=layer, region=region)

    @property
    def thing(self) -> str:
        """The function or parameter a consumer change is about ("" for a layer's)."""
        return self.function or self.parameter or ""


# The one type of details each action carries: planfile, render and savedplan have one entry
# per action and find these fields, and no others, in its details.
DETAILS: Mapping[Action, type[Details]] = {
    Action.CREATE: PublishDetails, Action.PUBLISH: PublishDetails, Action.NOOP: RecordDetails,
    Action.GRANT: GrantDetails, Action.DELETE: DeleteDetails, Action.FORGET: ForgetDetails,
    Action.UPDATE_FUNCTION: FunctionDetails, Action.PUT_PARAMETER: ParameterDetails}
# The actions that move a layer's consumers (they follow its publish in apply).
CONSUMER_ACTIONS = (Action.UPDATE_FUNCTION, Action.PUT_PARAMETER)
_Details = TypeVar("_Details", bound=Details)


@dataclass(frozen=True)
class Change:
    """One decision: its address, what apply does (`action`: apply switches on it alone), why
    (`reasons`: for people), the before (`current`) and after (`desired`) of its kind's
    payload, notes, and the details of its action (one value, of the type DETAILS names).

    For a layer, the payload is a version: the remote one the change was decided against
    and the desired one (a delete carries its layer's, a forget the recorded entry's
    digests); `layer_name` is the Lambda layer's name. A consumer change (update_function,
    put_parameter) carries its layer's `current` and `desired` as a delete does, and its own
    before and after in its details (FunctionDetails, ParameterDetails): every reader of a
    change keeps reading a layer version there, and the consumer's payload is typed by its
    action."""

    address: Address
    layer_name: str
    action: Action
    reasons: tuple[Reason, ...]
    current: RemoteVersion | None
    desired: Desired
    details: Details
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.details, DETAILS[self.action]):
            raise TypeError(f"a {self.action.value} change has {type(self.details).__name__}")

    @property
    def layer(self) -> str:
        """The layer's manifest key."""
        return self.address.layer

    @property
    def region(self) -> str:
        """The region the change is made in."""
        return self.address.region

    def details_as(self, kind: type[_Details]) -> _Details:
        """The details, of type `kind` by the action (TypeError if not)."""
        if not isinstance(self.details, kind):
            raise TypeError(f"a {self.action.value} change has no {kind.__name__}")
        return self.details

    @property
    def record(self) -> LockEntry | None:
        """The lock entry apply writes without publishing: a noop's, or None."""
        return self.details.record if isinstance(self.details, RecordDetails) else None


@dataclass(frozen=True)
class LayerError:
    """A layer that could not be planned (its content failed at packaging): shown in the
    plan with the others; apply refuses to start while any layer has one."""

    layer: str
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class PlanBasis:
    """What a plan was made against, so that a saved plan can tell when it went stale.

    `state_revision` is the recorded state's revision ("" when there was none),
    `fingerprints` each planned layer's content fingerprint, `targets` and `regions` the
    selection (empty: all), and the tool and packaging-format versions that made it. The rest
    of the selection: `manifest` is the manifest's path below the repository root the plan was
    made from ("" when it lay outside it: then `apply PLANFILE` needs `-f`), and `download`
    whether adoption by content could download zips (`--no-download` not given).
    """

    plan_id: str
    created: str
    manifest_sha256: str
    state_location: str
    state_revision: str
    fingerprints: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    regions: tuple[str, ...]
    tool_version: str
    packaging_format: int
    manifest: str = ""
    download: bool = True

    def fingerprint(self, layer: str) -> str | None:
        """The content fingerprint `layer` was planned with."""
        return dict(self.fingerprints).get(layer)


@dataclass(frozen=True)
class Plan:
    """Every decision, sorted by layer then region; the layers that could not be planned;
    and, for a plan that can be saved, what it was made against."""

    changes: tuple[Change, ...]
    errors: tuple[LayerError, ...] = ()
    basis: PlanBasis | None = None
    # For people (public grants, code storage near its quota): never change what apply does.
    warnings: tuple[str, ...] = ()

    def summary(self) -> dict[str, int]:
        """How many changes of each action, with every action present, and how many
        changes apply records in the state without publishing (`record`)."""
        counts = {action.value: 0 for action in Action}
        for change in self.changes:
            counts[change.action.value] += 1
        counts["record"] = len(self.records)
        return counts

    @property
    def has_remote_changes(self) -> bool:
        """True when apply would change Lambda or SSM (create, publish, delete, grant, a
        consumer function's update or a parameter's write)."""
        return any(change.action not in (Action.NOOP, Action.FORGET)
                   for change in self.changes)

    @property
    def has_changes(self) -> bool:
        """True when apply would change anything: Lambda, or the lockfile (an adopted version
        to record, or a layer to forget, is a change, as `plan --detailed-exitcode`
        reports)."""
        return self.has_remote_changes or bool(self.records) or any(
            change.action is Action.FORGET for change in self.changes)

    @property
    def records(self) -> tuple[Change, ...]:
        """The noop changes whose lock entry apply would write."""
        return tuple(change for change in self.changes if change.record is not None)
