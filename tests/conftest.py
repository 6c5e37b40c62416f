"""Shared fixtures, and the test tiers. tests/ is not a package: pytest puts it on sys.path
(rootdir conftest), so helper modules are imported by plain name (`import motoserver`,
`import fakes`).

Every test file belongs to one tier (TIERS), given to each of its tests as a marker:
`unit` (pure logic, no server), `adapters` (one adapter against moto, a Stubber, the proxy or
a real process), `contracts` (one suite run over every implementation of a port), `usecases`
(plan and apply over fakes or moto, in process) and `e2e` (the CLI, in process or as the
installed command). `make test-fast` runs all but e2e; a new test file must be placed here
(test_every_test_file_has_a_tier).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faultproxy
import motoserver
import pytest

TIERS: dict[str, tuple[str, ...]] = {
    "unit": ("test_archive", "test_build_follower", "test_builds_target", "test_builds_wheels",
             "test_containment",
             "test_consumers_planner", "test_consumers_savedplan", "test_elfcheck",
             "test_fleet_planner",
             "test_forget_planner", "test_gitignore",
             "test_layering", "test_lock_codecs", "test_manifest", "test_manifest_consumers",
             "test_manifest_fuzz", "test_plan_golden", "test_planfile", "test_planner",
             "test_prebuilt_zips",
             "test_ratelimit", "test_redact", "test_render", "test_schema", "test_sources",
             "test_statefile", "test_validation_record", "test_zipbuild"),
    "adapters": ("test_aws", "test_aws_answers", "test_aws_consumers", "test_aws_failures",
                 "test_aws_fleet", "test_binaries",
                 "test_aws_list_layers",
                 "test_aws_timeouts", "test_builds_index", "test_builds_locks",
                 "test_content_s3", "test_faultproxy", "test_faultproxy_hold", "test_forking",
                 "test_gcpolicy",
                 "test_lock_build_facts", "test_lock_build_pythons", "test_lock_holder",
                 "test_early_start", "test_prebuild", "test_prefetch",
                 "test_read_ahead", "test_state_local", "test_state_s3",
                 "test_streamed_upload"),
    "contracts": ("test_artifact_store_contract", "test_function_store_contract",
                  "test_layer_store_contract", "test_package_index_contract",
                  "test_parameter_store_contract", "test_state_contract"),
    "usecases": ("test_adoption", "test_command_compose", "test_consumers_apply", "test_consuming",
                 "test_converge_property",
                 "test_fleet_apply", "test_publish_faults", "test_publishing",
                 "test_reconcile", "test_stray_fillers", "test_uploads"),
    "e2e": ("test_action", "test_binary_check_e2e", "test_cli_basics", "test_cli_content",
            "test_consumers_e2e", "test_consumers_faults_e2e", "test_consumers_kill_e2e",
            "test_cli_e2e", "test_cli_fleet", "test_cli_inputs", "test_cli_lock_layers",
            "test_cli_small_fixes", "test_cli_uploads",
            "test_cli_validate", "test_cli_walk_checks", "test_fillers_e2e",
            "test_force_unlock", "test_github", "test_kill_anywhere_e2e",
            "test_lock_faults_e2e", "test_prebuild_folder", "test_reliability_e2e",
            "test_sandbox", "test_saved_plan",
            "test_saved_plan_verified", "test_teams_e2e"),
}
TIER_OF = {module: tier for tier, modules in TIERS.items() for module in modules}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its file's tier (an unplaced file's tests get none, and
    test_every_test_file_has_a_tier fails)."""
    for item in items:
        tier = TIER_OF.get(item.path.stem)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))

# Variables of boto3's chain that would let a developer's own AWS setup leak into a test.
_LEAKY_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3 sees no ~/.aws files, no instance metadata and none of the developer's AWS_*
    variables that pick a profile, endpoint, retry policy or extra credentials."""
    for name in _LEAKY_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the whole session (stopping one takes ~0.5 s); tests reset it."""
    with motoserver.running_moto_server() as url:
        yield url


@pytest.fixture
def moto_url(moto_server: str, aws_isolated: None,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A freshly reset moto server, with boto3's environment pointed at it (fake credentials,
    us-east-1, AWS_ENDPOINT_URL) and AWS_PROFILE removed; yields its URL."""
    motoserver.reset(moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield moto_server


@pytest.fixture
def proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[faultproxy.FaultProxy]:
    """A fault-injection proxy in front of the freshly reset moto server, AWS_ENDPOINT_URL
    pointed at it (the CLI talks to the proxy); it must end with no error of its own."""
    with faultproxy.running(moto_url) as running_proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running_proxy.url)
        yield running_proxy
        assert running_proxy.errors == []
