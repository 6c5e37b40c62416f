"""The options the commands share, as Annotated types (one declaration per flag: its name,
metavar and help), and the output-format choices. Declarations only: no option is read or
checked here beyond what typer does with them (types, `min`).

--help must not import botocore: defaults that live in heavy modules are written out here
(a test compares them).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from reconciler import ratelimit


class PlanFormat(str, Enum):
    """Output formats of `plan`."""

    text = "text"
    json = "json"
    markdown = "markdown"


class ApplyFormat(str, Enum):
    """Output formats of `apply`."""

    text = "text"
    json = "json"


class OutputsFormat(str, Enum):
    """Output formats of `outputs`."""

    text = "text"
    json = "json"


ManifestOption = Annotated[Path, typer.Option(
    "-f", "--manifest", metavar="MANIFEST", help="The manifest.", show_default=True)]
LockfileOption = Annotated[Path | None, typer.Option(
    "--lockfile", metavar="PATH",
    help="The lockfile [default: <manifest stem>.lock.json beside the manifest].")]
TargetOption = Annotated[list[str] | None, typer.Option(
    "--target", metavar="NAME", help="Only this layer (repeatable).")]
RegionOption = Annotated[list[str] | None, typer.Option(
    "--region", metavar="REGION", help="Only this region of the manifest (repeatable).")]
ProfileOption = Annotated[str | None, typer.Option(
    "--profile", metavar="NAME", help="AWS profile (default: boto3's chain, AWS_PROFILE).")]
EndpointOption = Annotated[str | None, typer.Option(
    "--endpoint-url", metavar="URL",
    help="AWS endpoint (default: AWS_ENDPOINT_URL), e.g. a moto server.")]
AttemptsOption = Annotated[int | None, typer.Option(
    "--max-attempts", metavar="N", min=1,
    help="Attempts of each read, the first included (default: boto3's, AWS_MAX_ATTEMPTS); "
         "a publish is sent once and never retried blindly.")]
TimeoutOption = Annotated[float | None, typer.Option(
    "--timeout", metavar="SECONDS", min=0.1,
    # aws.DEFAULT_TIMEOUT, written out: --help must not import botocore (a test compares).
    help="Connect to AWS, and wait for each reply, at most this long (default 10; a "
         "publish waits longer, by its size).")]
NoSummaryOption = Annotated[bool, typer.Option(
    "--no-summary", help="Do not append the plan to GITHUB_STEP_SUMMARY.")]
LockTimeoutOption = Annotated[float, typer.Option(
    "--lock-timeout", metavar="SECONDS", min=0,
    help="Wait this long for a state lock held by another run.")]
ParallelismOption = Annotated[int, typer.Option(
    "--parallelism", metavar="N", min=1, help="Layers and regions worked on at once.")]
NoDownloadOption = Annotated[bool, typer.Option(
    "--no-download", help="Never download a published zip to compare its files (no "
                          "adoption by content).")]
MaxRpsOption = Annotated[float, typer.Option(
    "--max-rps", metavar="N", min=0,
    help=f"Lambda calls per second per region, at most (default {ratelimit.DEFAULT_RPS:g}, "
         "under Lambda's ~15/s quota; 0: no limit).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
