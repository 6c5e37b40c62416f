"""GitHub: the pull-request comment through the installed CLI against a loopback stand-in of the
REST API (one comment per manifest, found again among others' comments on later pages, cut
under GitHub's limit, the token never shown); the step summary on every outcome under a heading
naming the manifest and never past 1 MiB; the step outputs; annotations of manifest problems."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import githubstandin
import pytest
from clirun import invoke
from githubstandin import outputs_of

from reconciler import errors, github, model, render

TOKEN = "ghs_s3cr3tT0kenThatMustNeverBeShown"
MANIFEST = """\
version: 1
region: us-east-1
layers:
  alpha:
    content: {path: src/alpha, prefix: python}
"""


@pytest.fixture
def checkout(tmp_path: Path, moto_url: str) -> Path:
    """A repository with one folder layer, next to a freshly reset moto server."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "src" / "alpha").mkdir(parents=True)
    (root / "src" / "alpha" / "alpha.py").write_text("NAME = 'alpha'\n")
    (root / "layers.yaml").write_text(MANIFEST)
    return root


@pytest.fixture
def api() -> Iterator[githubstandin.GitHubStandIn]:
    """The GitHub REST API stand-in on a loopback port."""
    with githubstandin.running(TOKEN) as stand_in:
        yield stand_in


def actions_environment(tmp_path: Path, *, api_url: str, event: dict[str, object],
                        event_name: str = "pull_request") -> dict[str, str]:
    """The variables GitHub Actions sets for a step (with the token the workflow passes)."""
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    return {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_API_URL": api_url,
            "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "acme/layers",
            "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": "4242",
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_OUTPUT": str(tmp_path / "output.txt")}


def test_one_comment_per_manifest_is_posted_then_updated(
        checkout: Path, tmp_path: Path, api: githubstandin.GitHubStandIn) -> None:
    """With 120 comments by others before it, the first run posts one comment and every later
    run updates that same one (found on the second page), never a second."""
    for index in range(120):
        api.add_comment(7, f"comment {index}")
    env = actions_environment(tmp_path, api_url=api.url, event={"pull_request": {"number": 7}})
    plan_file = tmp_path / "plan.json"
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    first = invoke(checkout, "comment", str(plan_file), env=env)
    assert first.returncode == 0, first.stderr
    assert "posted the plan comment on pull request #7" in first.stdout
    assert api.count("POST") == 1 and api.count("PATCH") == 0
    (checkout / "src" / "alpha" / "alpha.py").write_text("NAME = 'edited'\n")
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    for _ in range(2):
        again = invoke(checkout, "comment", str(plan_file), env=env)
        assert again.returncode == 0, again.stderr
        assert "updated the plan comment on pull request #7" in again.stdout
    assert api.count("POST") == 1 and api.count("PATCH") == 2
    ours = [item for item in api.comments[7] if "reconcile-plan" in item["body"]]
    assert len(ours) == 1 and len(api.comments[7]) == 121
    assert ours[0]["body"].startswith("<!-- reconcile-plan manifest=layers.yaml -->\n")
    assert "### reconcile plan: `layers.yaml`" in ours[0]["body"]
    assert "| + | `alpha` | us-east-1 | create v1 |" in ours[0]["body"]


def test_an_api_error_names_the_status_and_never_the_token(
        checkout: Path, tmp_path: Path, api: githubstandin.GitHubStandIn) -> None:
    """A 401 (a wrong token) exits 1 naming the status; the token is in no output or file."""
    env = actions_environment(tmp_path, api_url=api.url, event={"pull_request": {"number": 3}})
    plan_file = tmp_path / "plan.json"
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    refused = invoke(checkout, "comment", str(plan_file),
                     env={**env, "GITHUB_TOKEN": TOKEN + "-wrong"})
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr and "GET /repos/acme/layers/issues/3/comments" \
        in refused.stderr
    api.fail_with = 500
    failed = invoke(checkout, "comment", str(plan_file), env=env)
    assert failed.returncode == 1 and "HTTP 500" in failed.stderr
    for text in (refused.stdout, refused.stderr, failed.stdout, failed.stderr,
                 plan_file.read_text(), (tmp_path / "summary.md").read_text()):
        assert TOKEN not in text


def test_outside_a_pull_request_nothing_is_posted(
        checkout: Path, tmp_path: Path, api: githubstandin.GitHubStandIn) -> None:
    """A push event: it says so, posts nothing, makes no request, exit 0."""
    env = actions_environment(tmp_path, api_url=api.url, event={"ref": "refs/heads/main"},
                              event_name="push")
    plan_file = tmp_path / "plan.json"
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    result = invoke(checkout, "comment", str(plan_file), env=env)
    assert result.returncode == 0
    assert "not a pull request (push): no comment posted." in result.stdout
    assert api.requests == []


def test_a_long_plan_is_cut_under_the_comment_limit() -> None:
    """A plan past 65,536 characters is cut at a line, with a note linking to the run."""
    markdown = "".join(f"| + | `layer-{index}` | us-east-1 | create v1 | `new_layer` |\n"
                       for index in range(3000))
    body = github.comment_body(markdown, manifest="teams/a/layers.yaml",
                               run_url="https://github.example/acme/layers/actions/runs/1")
    assert len(body) < github.COMMENT_LIMIT
    assert body.startswith("<!-- reconcile-plan manifest=teams/a/layers.yaml -->\n| + |")
    assert body.rstrip().endswith("see [the run](https://github.example/acme/layers/actions/"
                                  "runs/1).*")
    assert "\n*The plan is cut here" in body
    short = github.comment_body("| + | `a` |\n", manifest="layers.yaml", run_url=None)
    assert short == "<!-- reconcile-plan manifest=layers.yaml -->\n| + | `a` |\n"


def _plan_of(layers: int, regions: tuple[str, ...]) -> model.Plan:
    settings = model.Settings()
    desired = model.Desired(settings=settings, fingerprint="f" * 64, code_sha256="A" * 43 + "=",
                            content_sha256="c" * 64, code_size=1234)
    return model.Plan(changes=tuple(
        model.Change(address=model.Address.of_layer(f"team-layer-{index:05d}", region),
                     layer_name=f"team-layer-{index:05d}", action=model.Action.CREATE,
                     reasons=(model.Reason.NEW_LAYER,), current=None, desired=desired,
                     details=model.PublishDetails(
                         expected_version=1,
                         diff=(model.FieldChange(field="code_sha256", before=None,
                                                 after=desired.code_sha256),)))
        for index in range(layers) for region in regions))


def test_the_step_summary_never_passes_one_mebibyte(tmp_path: Path) -> None:
    """The summary of a plan of 4,000 layers in two regions (over 1 MiB), alone or appended to
    a summary that already holds 900 KB, is cut at a line with a note: the file stays at most
    1 MiB, as GitHub requires."""
    markdown = render.markdown(_plan_of(4000, ("us-east-1", "eu-west-1")),
                               title=github.heading("plan", "layers.yaml"))
    assert len(markdown.encode()) > github.STEP_SUMMARY_LIMIT
    summary = tmp_path / "summary.md"
    github.append_step_summary(summary, markdown, run_url=None)
    assert 900_000 < summary.stat().st_size <= github.STEP_SUMMARY_LIMIT
    assert summary.read_text().endswith("; the rest is in the job's log.*\n")
    summary.write_text("x" * 900_000 + "\n")
    github.append_step_summary(summary, markdown, run_url="https://github.example/run/1")
    assert summary.stat().st_size <= github.STEP_SUMMARY_LIMIT
    assert summary.read_text().endswith("the rest is in [the job's log](https://github.example/run/1).*\n")
    summary.write_text("x" * github.STEP_SUMMARY_LIMIT)
    github.append_step_summary(summary, markdown, run_url=None)
    assert summary.stat().st_size == github.STEP_SUMMARY_LIMIT


def test_annotations_escape_what_github_would_misread() -> None:
    """A problem becomes one `::error file=,line=,col=::` line with `,`, `:`, `%` and newlines
    escaped as the workflow-command syntax requires."""
    problem = errors.Problem("teams/a,b/layers.yaml", 4, 7, "layers.x: y",
                             "100% wrong\nsecond line")
    assert github.annotation(problem) == (
        "::error file=teams/a%2Cb/layers.yaml,line=4,col=7,title=reconcile%3A layers.x%3A y::"
        "100%25 wrong%0Asecond line")


def test_plan_outputs_summary_and_annotations_on_every_outcome(
        checkout: Path, tmp_path: Path) -> None:
    """plan writes exitcode, changes and plan-file to GITHUB_OUTPUT and its summary under a
    heading naming the manifest; an invalid manifest still gets a summary, exit 1 outputs and
    an annotation; a refused apply gets a summary too."""
    env = actions_environment(tmp_path, api_url="http://127.0.0.1:9", event={})
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    planned = invoke(checkout, "plan", "--detailed-exitcode", "--out", "plan.json", env=env)
    assert planned.returncode == 2
    assert outputs_of(output) == {"exitcode": "2", "changes": "true", "plan-file": "plan.json"}
    assert "### reconcile plan: `layers.yaml`" in summary.read_text()
    output.unlink()
    summary.unlink()
    (checkout / "layers.yaml").write_text(MANIFEST.replace("region: us-east-1",
                                                           "region: us-east-1\nbogus: 1"))
    invalid = invoke(checkout, "plan", env=env)
    assert invalid.returncode == 1
    assert invalid.stdout.startswith("::error file=layers.yaml,line=3,col=1,")
    assert outputs_of(output) == {"exitcode": "1", "changes": "false"}
    text = summary.read_text()
    assert text.startswith("### reconcile plan: `layers.yaml`\n\n:x: **plan failed**")
    assert "bogus" in text
    (checkout / "layers.yaml").write_text(MANIFEST)
    refused = invoke(checkout, "apply", env=env)
    assert refused.returncode == 1
    assert "### reconcile apply: `layers.yaml`\n\n:x: **apply failed**: refusing to apply " \
        "without confirmation" in summary.read_text()
    no_summary = invoke(checkout, "plan", "--no-summary", env={**env, "GITHUB_STEP_SUMMARY": str(
        tmp_path / "other.md")})
    assert no_summary.returncode == 0 and not (tmp_path / "other.md").exists()


def test_a_marker_pasted_by_someone_else_is_never_updated(
        checkout: Path, tmp_path: Path, api: githubstandin.GitHubStandIn) -> None:
    """A comment by another login carrying the marker (anyone can paste it) is left alone:
    the tool posts its own comment, then updates only that one."""
    api.add_comment(9, "<!-- reconcile-plan manifest=layers.yaml -->\nNo changes. Trust me.",
                    login="mallory")
    env = actions_environment(tmp_path, api_url=api.url, event={"pull_request": {"number": 9}})
    plan_file = tmp_path / "plan.json"
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    for _ in range(2):
        assert invoke(checkout, "comment", str(plan_file), env=env).returncode == 0
    assert api.count("POST") == 1 and api.count("PATCH") == 1
    assert api.comments[9][0]["body"].endswith("No changes. Trust me.")
    assert api.comments[9][1]["user"]["login"] == "github-actions[bot]"


def test_a_token_or_api_url_that_cannot_be_sent_is_one_error(
        checkout: Path, tmp_path: Path, api: githubstandin.GitHubStandIn) -> None:
    """A token pasted with its line break still works (white space around it is dropped); one
    with a control character inside, or an API URL that is not https, is one message naming
    the variable, exit 1, the token in no output and no traceback."""
    env = actions_environment(tmp_path, api_url=api.url, event={"pull_request": {"number": 4}})
    plan_file = tmp_path / "plan.json"
    assert invoke(checkout, "plan", "--out", str(plan_file), env=env).returncode == 0
    pasted = invoke(checkout, "comment", str(plan_file), env={**env, "GITHUB_TOKEN": TOKEN + "\n"})
    assert pasted.returncode == 0, pasted.stderr
    broken = invoke(checkout, "comment", str(plan_file),
                    env={**env, "GITHUB_TOKEN": TOKEN[:8] + "\r\n" + TOKEN[8:]})
    assert broken.returncode == 1
    assert "GITHUB_TOKEN is empty or holds a space, a line break" in broken.stderr
    no_scheme = invoke(checkout, "comment", str(plan_file),
                       env={**env, "GITHUB_API_URL": "api.github.example"})
    assert no_scheme.returncode == 1 and "is not an https:// URL" in no_scheme.stderr
    for result in (pasted, broken, no_scheme):
        assert TOKEN[8:] not in result.stdout + result.stderr
