"""Publish a layer version exactly once, over a PublishLayerVersion that has no idempotency token.

Owns the decision to send a publish again: only when it certainly made no version and was
throttled (after a jittered backoff), or when its outcome was unknown and a look at Lambda
found no version with the desired content and settings above the one the plan was decided
against (then that version is the result: adopted). It never sends blind: when the look
itself fails, it stops. It talks to Lambda only through the LayerStore it is given, and never
prints or records anything.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler import errors, model, ports

# The first wait after a throttled publish, doubled after each further one, capped; each wait
# is drawn uniformly below that bound ("full jitter"), so that parallel runs spread out.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 20.0


@dataclass(frozen=True)
class Published:
    """The version a publish made (or, after an unknown outcome, the one found and adopted)
    and how many PublishLayerVersion calls were sent for it."""

    version: model.RemoteVersion
    adopted: bool
    sends: int


def backoff_bound(waits_before: int) -> float:
    """The upper bound of the wait after `waits_before` earlier waits (0 for the first)."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** waits_before))


def _is_throttling(error: errors.PublishNotSent) -> bool:
    return error.aws_code in errors.THROTTLING_CODES


def publish_exactly_once(
    store: ports.LayerStore,
    *,
    region: str,
    layer_name: str,
    settings: model.Settings,
    zip_path: Path | None,
    code_sha256: str,
    above_version: int,
    s3_object: model.S3Object | None = None,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """Publish `zip_path` (or, when given, `s3_object`) as a new version of `layer_name` in
    `region`, at most `attempts` sends, never two versions for one call.

    `above_version` is the remote latest version the plan was decided against (0: none): a
    version above it with `code_sha256` and equal `settings` is what an unknown outcome made.

    - PublishNotSent, throttled: wait (jittered backoff) and send again, within `attempts`.
    - PublishNotSent, otherwise: raised as it is (nothing was made; sending it again would
      be refused again).
    - PublishOutcomeUnknown: look at the versions above `above_version`; a match is adopted;
      none: send again, within `attempts`. From then on every send is preceded by a look
      (a throttled send too). A failed look raises PublishOutcomeUnknown and sends nothing
      more; so does a refusal after an unknown outcome (that send may still show a version).
    Out of attempts after an unknown outcome: PublishOutcomeUnknown, saying what was looked
    for; the next plan adopts the version if one appears.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    where = f"layer '{layer_name}' in {region}"
    sends = waits = 0
    # Once a send's outcome is unknown, every later send is preceded by a look: that send
    # may have made the version, and a listing may show it only later.
    unknown: errors.PublishOutcomeUnknown | None = None
    refused_after_unknown: errors.PublishNotSent | None = None

    def wait() -> None:
        nonlocal waits
        sleep(random.uniform(0, backoff_bound(waits)))
        waits += 1

    while True:
        if unknown is not None:
            try:
                found = store.versions_above(region=region, layer_name=layer_name,
                                             version=above_version)
            except errors.AwsError as lookup_failed:
                raise errors.PublishOutcomeUnknown(
                    f"PublishLayerVersion for {where} was sent and its outcome is unknown "
                    f"({_why(unknown)}); looking for the version it may have made "
                    f"(above v{above_version}) failed too: {lookup_failed.message}; it was "
                    "not sent again",
                    hint=_ADOPT_HINT, aws_code=unknown.aws_code) from lookup_failed
            if not code_sha256:
                # The code's CodeSha256 is not known before the publish (an S3 object with
                # no single-part SHA-256 checksum): a version above with the desired
                # settings may be this publish's, and nothing can tell. Never sent again.
                unclear = [candidate.version for candidate in found
                           if candidate.version > above_version
                           and candidate.settings == settings]
                if unclear:
                    raise errors.PublishOutcomeUnknown(
                        f"PublishLayerVersion for {where} was sent and its outcome is "
                        f"unknown ({_why(unknown)}); v{max(unclear)} has the desired settings "
                        "but its code cannot be compared (its CodeSha256 is not known before "
                        "the publish); it was not sent again",
                        hint="check that version's code; `reconcile plan` shows what it "
                             "would do next", aws_code=unknown.aws_code)
            matching = [candidate for candidate in found
                        if candidate.version > above_version
                        and candidate.code_sha256 == code_sha256
                        and candidate.settings == settings]
            if matching:
                adopted = max(matching, key=lambda candidate: candidate.version)
                return Published(version=adopted, adopted=True, sends=sends)
            if sends >= attempts:
                raise _still_unknown(where=where, sends=sends, cause=unknown,
                                     last=refused_after_unknown, above_version=above_version,
                                     code_sha256=code_sha256) from unknown
            wait()
        sends += 1
        try:
            version = store.publish(region=region, layer_name=layer_name, settings=settings,
                                    zip_path=zip_path, s3_object=s3_object)
        except errors.PublishNotSent as not_sent:
            if _is_throttling(not_sent) and sends < attempts:
                if unknown is None:
                    wait()
                else:
                    refused_after_unknown = not_sent  # the look at the loop's top waits
                continue
            if unknown is not None:
                # An earlier send's outcome is still unknown (none was found when looked
                # for, but a listing may lag): this failure cannot say "no version".
                raise _still_unknown(where=where, sends=sends, cause=unknown,
                                     last=not_sent, above_version=above_version,
                                     code_sha256=code_sha256) from not_sent
            raise _not_sent(not_sent, sends=sends) from not_sent
        except errors.PublishOutcomeUnknown as outcome_unknown:
            unknown, refused_after_unknown = outcome_unknown, None
            continue
        return Published(version=version, adopted=False, sends=sends)


_ADOPT_HINT = ("run plan again: if the publish made a version, the next plan adopts it "
               "(records it) instead of publishing again")


def _why(cause: errors.PublishOutcomeUnknown) -> str:
    """What went wrong, without the store's own "was sent, outcome unknown" preamble, which
    the messages here say themselves."""
    return cause.message.partition("outcome is unknown: ")[2] or cause.message


def _not_sent(error: errors.PublishNotSent, *, sends: int) -> errors.PublishNotSent:
    if sends == 1:
        return error
    return errors.PublishNotSent(f"{error.message}; it was sent {sends} times, each refused",
                                 hint=error.hint, aws_code=error.aws_code)


def _still_unknown(*, where: str, sends: int, cause: errors.PublishOutcomeUnknown,
                   last: errors.PublishNotSent | None, above_version: int,
                   code_sha256: str) -> errors.PublishOutcomeUnknown:
    last_words = f"; the last send was refused: {last.message}" if last else ""
    return errors.PublishOutcomeUnknown(
        f"PublishLayerVersion for {where} was sent {sends} time{'s' if sends != 1 else ''} "
        f"and its outcome is unknown (last: {_why(cause)}); looked for a version above "
        f"v{above_version} with CodeSha256 {code_sha256} and the desired settings, and found "
        f"none{last_words}",
        hint=_ADOPT_HINT, aws_code=cause.aws_code)
