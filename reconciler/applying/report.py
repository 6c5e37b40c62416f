"""What apply did, as values: the versions published, records written, grants, deletions,
failures and changes not started (ApplyReport, with the words of a failure). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler import errors, model
from reconciler.applying.consumers import Moved, Written


@dataclass(frozen=True)
class Published:
    """A version apply published (or found already published after a lost reply)."""

    change: model.Change
    version: model.RemoteVersion
    adopted: bool = False
    fillers: tuple[int, ...] = ()  # align_versions' filler versions, deleted next


@dataclass(frozen=True)
class Granted:
    """A `grant` change carried out on its version."""

    change: model.Change


@dataclass(frozen=True)
class Deleted:
    """Versions apply deleted for one change: a retention `delete`, or a publish's fillers."""

    change: model.Change
    versions: tuple[int, ...]


Outcome = Published | Granted | Deleted


@dataclass(frozen=True)
class Failed:
    """A change that failed, and why."""

    change: model.Change
    error: errors.ReconcilerError


@dataclass(frozen=True)
class NotAttempted:
    """A change apply did not start, and why."""

    change: model.Change
    why: str


@dataclass
class ApplyReport:
    """What apply did: versions published, records written, failures, changes not tried."""

    published: list[Published] = field(default_factory=list)
    recorded: list[model.Change] = field(default_factory=list)
    granted: list[model.Change] = field(default_factory=list)
    forgotten: list[model.Change] = field(default_factory=list)  # out of the state
    deleted: list[Deleted] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    not_attempted: list[NotAttempted] = field(default_factory=list)
    moved: list[Moved] = field(default_factory=list)  # consumer functions updated
    written: list[Written] = field(default_factory=list)  # parameters written
    unchanged: int = 0
    interrupted: bool = False
    lock: model.Lock = field(default_factory=model.Lock)
    revision: str = ""

    def sort(self) -> None:
        """Each list in the plan's order (layer, region, version), whatever order the lanes
        finished in."""
        def by_change(item: Published | Failed | NotAttempted | Deleted | Moved | Written
                      ) -> tuple[str, str, int, str]:
            change, details = item.change, item.change.details
            version = details.version if isinstance(
                details, model.DeleteDetails | model.ForgetDetails) else 0
            return (change.layer, change.region, version, change.address.thing)

        self.published.sort(key=by_change)
        self.failed.sort(key=by_change)
        self.not_attempted.sort(key=by_change)
        self.deleted.sort(key=by_change)
        self.moved.sort(key=by_change)
        self.written.sort(key=by_change)
        self.granted.sort(key=lambda change: (change.layer, change.region))
        self.forgotten.sort(key=lambda change: (change.layer, change.region))

    @property
    def ok(self) -> bool:
        """True when every change was carried out."""
        return not (self.failed or self.not_attempted or self.interrupted)

    def failure_summary(self, *, state_location: str) -> str:
        """What failed and what was done before, in words that never claim more than is
        known: after a publish whose outcome is unknown, "nothing" is a claim nobody can
        make, so the message says that publish may have made an unrecorded version."""
        done = ", ".join(f"{item.change.layer} ({item.change.region}) v{item.version.version}"
                         for item in self.published)
        unknown = [item for item in self.failed
                   if isinstance(item.error, errors.PublishOutcomeUnknown)]
        failed = "; ".join(f"{item.change.layer} ({item.change.region}): {item.error.message}"
                           for item in self.failed)
        lines = [f"apply incomplete: {len(self.failed)} failed, {len(self.not_attempted)} not "
                 f"attempted" + (f" ({failed})" if failed else "")]
        if unknown:
            lines.append(
                f"recorded in {state_location} before the failure: {done or 'no version'}; "
                + "; ".join(f"the failed publish of {item.change.layer} ({item.change.region}) "
                            "may have made a version that is not recorded" for item in unknown))
        else:
            lines.append(f"published before the failure, and recorded in the lockfile "
                         f"({state_location}): {done or 'nothing'}")
        return "\n".join(lines)
