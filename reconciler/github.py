"""GitHub: the Actions job's step summary, outputs and annotations, and the pull-request comment
through the REST API. Shell: it reads the GITHUB_* values it is handed, appends to the files
Actions names and talks HTTP to `GITHUB_API_URL`; it never prints and never decides what a plan
is (the caller hands it Markdown).

Limits it keeps: GitHub drops a whole step summary over 1 MiB, so an append is cut to what fits
(at a line, with a note) and the file never passes 1 MiB; a comment body must stay under 65,536
characters, so a long plan is cut with a note and a link to the run. The token goes in one
header and nowhere else: errors name the method, the path and the HTTP status only.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import errors

STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes: GitHub drops a step summary over this
COMMENT_LIMIT = 65_536  # characters of a comment body, GitHub's limit
_PAGE = 100  # comments per page, GitHub's maximum
_MAX_PAGES = 100  # 10,000 comments: past that a pull request is not one this tool serves
_TIMEOUT = 30.0  # seconds, each request


class GitHubError(errors.ReconcilerError):
    """The GitHub API refused or failed a request (the status is in the message)."""

    code = "github_error"


@dataclass(frozen=True)
class Actions:
    """What the Actions runner hands a step, read from its environment."""

    step_summary: Path | None
    output: Path | None
    annotations: bool
    run_url: str | None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Actions:
        """The runner's files and flags (all absent outside Actions)."""
        server, repository, run_id = (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"),
                                      env.get("GITHUB_RUN_ID"))
        return cls(
            step_summary=Path(env["GITHUB_STEP_SUMMARY"]) if env.get("GITHUB_STEP_SUMMARY")
            else None,
            output=Path(env["GITHUB_OUTPUT"]) if env.get("GITHUB_OUTPUT") else None,
            annotations=env.get("GITHUB_ACTIONS") == "true",
            run_url=(f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
                     if server and repository and run_id else None))


def heading(command: str, manifest: str) -> str:
    """The title of a section of the step summary: the command and the manifest it ran on."""
    return f"reconcile {command}: `{manifest}`"


def _cut(text: str, *, room: int, note: str) -> str:
    """`text` cut at a line so that it and `note` take at most `room` UTF-8 bytes."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return text
    keep = max(0, room - len(note.encode("utf-8")))
    head = data[:keep].decode("utf-8", errors="ignore")
    if "\n" in head:
        head = head[:head.rindex("\n") + 1]
    return head + note


def append_step_summary(path: Path, markdown: str, *, run_url: str | None) -> None:
    """Append `markdown` to the step summary, cut so that the file stays at most
    STEP_SUMMARY_LIMIT bytes (nothing is appended when not even the note fits)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    except OSError as exc:
        raise errors.UsageError(f"cannot read GITHUB_STEP_SUMMARY ({path}): "
                                f"{exc.strerror or exc}") from None
    where = f"[the job's log]({run_url})" if run_url else "the job's log"
    note = f"\n*Cut here: a step summary holds at most 1 MiB; the rest is in {where}.*\n"
    room = STEP_SUMMARY_LIMIT - size
    text = _cut(markdown if markdown.endswith("\n") else markdown + "\n", room=room, note=note)
    if len(text.encode("utf-8")) > room:
        return
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise errors.UsageError(f"cannot write GITHUB_STEP_SUMMARY ({path}): "
                                f"{exc.strerror or exc}") from None


def write_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append step outputs in the runner's delimited form (`name<<DELIMITER`), which holds
    any value safely."""
    lines = []
    for name, value in values.items():
        delimiter = f"reconcile_{secrets.token_hex(8)}"
        lines += [f"{name}<<{delimiter}", value, delimiter]
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    except OSError as exc:
        raise errors.UsageError(f"cannot write GITHUB_OUTPUT ({path}): "
                                f"{exc.strerror or exc}") from None


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(problem: errors.Problem) -> str:
    """A workflow command that marks a manifest problem at its file, line and column."""
    return (f"::error file={_escape_property(problem.file)},line={problem.line},"
            f"col={problem.column},title={_escape_property('reconcile: ' + problem.field)}::"
            f"{_escape_data(problem.message)}")


# --- the pull-request comment ------------------------------------------------------------------

_SAFE_MARKER = re.compile(r"[^A-Za-z0-9._/@+=-]")


def marker(manifest: str) -> str:
    """The hidden line that finds this manifest's comment again (HTML comment, safe text)."""
    return f"<!-- reconcile-plan manifest={_SAFE_MARKER.sub('_', manifest) or 'layers.yaml'} -->"


def comment_body(markdown: str, *, manifest: str, run_url: str | None) -> str:
    """The comment: the marker, then the plan, cut under COMMENT_LIMIT characters with a note
    and a link to the run."""
    head = marker(manifest) + "\n"
    where = f"[the run]({run_url})" if run_url else "the run's log"
    note = f"\n*The plan is cut here (a comment holds at most 65,536 characters): see {where}.*"
    body = head + markdown
    if len(body) < COMMENT_LIMIT:
        return body
    keep = COMMENT_LIMIT - len(head) - len(note) - 2
    text = markdown[:keep]
    if "\n" in text:
        text = text[:text.rindex("\n") + 1]
    return head + text + note + "\n"


def pull_request_number(event_path: str | None) -> int | None:
    """The pull request of the event Actions ran for (None outside a pull request)."""
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise errors.UsageError(f"cannot read the event GITHUB_EVENT_PATH names ({event_path}): "
                                f"{exc}") from None
    if not isinstance(event, dict):
        return None
    pull = event.get("pull_request")
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        number: int = pull["number"]
        return number
    issue = event.get("issue")
    if (isinstance(issue, dict) and isinstance(issue.get("pull_request"), dict)
            and isinstance(issue.get("number"), int)):
        found: int = issue["number"]
        return found
    return None


@dataclass(frozen=True)
class Posted:
    """What `post_comment` did: `created` or updated, and the comment's address."""

    created: bool
    url: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would send the Authorization header to wherever it
    points."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


class CommentClient:
    """The few REST calls a plan comment needs, with the token in one header only."""

    def __init__(self, *, api_url: str, token: str, repository: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+", repository):
            raise errors.UsageError(f"GITHUB_REPOSITORY {repository!r} is not OWNER/NAME")
        token = token.strip()
        # A secret pasted with its line break would make http.client raise with the header,
        # token and all, in the message: refused here, naming the variable, never the value.
        if not token or any(ord(character) < 0x21 or ord(character) == 0x7F
                            for character in token):
            raise errors.UsageError("GITHUB_TOKEN is empty or holds a space, a line break or "
                                    "another control character",
                                    hint="set the secret without surrounding white space")
        parsed = urllib.parse.urlsplit(api_url)
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        secure = parsed.scheme == "https" or (parsed.scheme == "http" and loopback)
        if not secure or not parsed.hostname:
            raise errors.UsageError(
                f"GITHUB_API_URL {api_url!r} is not an https:// URL",
                hint="it is https://api.github.com, or your GitHub Enterprise Server's API URL")
        self._api = api_url.rstrip("/")
        self._token = token
        self._repository = repository

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self._api + path, method=method,
            data=json.dumps(body).encode("utf-8") if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}",
                     "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28",
                     "Content-Type": "application/json",
                     "User-Agent": "reconcile"})
        where = f"{method} {path.split('?')[0]}"
        try:
            with _OPENER.open(request, timeout=_TIMEOUT) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            error.close()  # it holds the reply's connection open until closed
            raise GitHubError(f"the GitHub API answered {where} with HTTP {error.code} "
                              f"{error.reason}",
                              hint="check that the token may write pull-request comments "
                                   "(permissions: pull-requests: write)") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise GitHubError(f"cannot reach the GitHub API for {where}: {reason}") from None
        except (http.client.HTTPException, ValueError) as error:
            # Named by its kind alone: such a message may quote a header, the token's too.
            raise GitHubError(f"the GitHub API call {where} failed "
                              f"({type(error).__name__})") from None
        try:
            return json.loads(data) if data else None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise GitHubError(f"the GitHub API answered {where} with something that is "
                              "not JSON") from None

    def login(self) -> str | None:
        """The login the token acts as (GET /user), None when the API will not say: a
        workflow's GITHUB_TOKEN, an app's installation token (403 or 404)."""
        try:
            answer = self._call("GET", "/user")
        except GitHubError:
            return None
        login = answer.get("login") if isinstance(answer, dict) else None
        return login if isinstance(login, str) and login else None

    def comments(self, number: int) -> list[dict[str, Any]]:
        """Every comment of the pull request, page by page."""
        found: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            answer = self._call("GET", f"/repos/{self._repository}/issues/{number}/comments"
                                       f"?per_page={_PAGE}&page={page}")
            if not isinstance(answer, list):
                raise GitHubError("the GitHub API answered the comment list with something "
                                  "that is not a list")
            found.extend(item for item in answer if isinstance(item, dict))
            if len(answer) < _PAGE:
                break
        return found

    def post(self, number: int, body: str) -> str:
        """A new comment; its address."""
        answer = self._call("POST", f"/repos/{self._repository}/issues/{number}/comments",
                            {"body": body})
        return _address(answer)

    def update(self, comment_id: int, body: str) -> str:
        """That comment's body replaced; its address."""
        answer = self._call("PATCH", f"/repos/{self._repository}/issues/comments/{comment_id}",
                            {"body": body})
        return _address(answer)


def _address(answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("html_url"), str):
        url: str = answer["html_url"]
        return url
    return "(no address in the answer)"


# Who a workflow's GITHUB_TOKEN comments as (GET /user does not answer for it).
ACTIONS_LOGIN = "github-actions[bot]"


def post_comment(client: CommentClient, *, number: int, body: str, manifest: str) -> Posted:
    """Update this manifest's comment on the pull request (the oldest one carrying its
    marker and written by the token's own login), or post it when there is none. A comment
    anybody else wrote is never updated, whatever marker it carries: a marker is text that
    any commenter can paste."""
    tag = marker(manifest)
    author = client.login() or ACTIONS_LOGIN
    for existing in client.comments(number):
        text, comment_id, user = existing.get("body"), existing.get("id"), existing.get("user")
        login = user.get("login") if isinstance(user, dict) else None
        if (isinstance(text, str) and isinstance(comment_id, int) and text.startswith(tag)
                and login == author):
            return Posted(created=False, url=client.update(comment_id, body))
    return Posted(created=True, url=client.post(number, body))
