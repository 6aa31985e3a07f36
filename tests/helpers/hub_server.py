"""A local stand-in for the Hugging Face Hub: the few endpoints huggingface_hub's upload
(``create_repo``, ``create_commit``) and download (``hf_hub_download``) call, over HTTP on
127.0.0.1, holding its repositories in memory. Point the client at it with ``HF_ENDPOINT``.

Endpoints (as in huggingface_hub's ``hf_api.py``, ``_commit_api.py`` and ``file_download.py``):

* ``POST /api/repos/create``: ``{"name", "organization", "visibility"}``; 409 if it exists;
* ``POST /api/validate-yaml``: the model card's metadata, always valid here;
* ``POST /api/models/{repo}/preupload/{revision}``: every file uploaded "regular" (inline);
* ``POST /api/models/{repo}/commit/{revision}``: NDJSON, a header then base64 files;
* ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: the file with ``X-Repo-Commit`` and
  ``ETag``; ``X-Error-Code`` RepoNotFound / RevisionNotFound / EntryNotFound otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse


@dataclass
class Repository:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, Repository] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.lock = threading.Lock()

    def files(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.repos[repo_id]
        sha = repo.refs.get(revision, revision)
        return (sha, repo.commits[sha]) if sha in repo.commits else None


class _Handler(http.server.BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self._reply(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str) -> None:
        self._json(status, {"error": code}, {"X-Error-Code": code})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _record(self) -> str:
        path = urlparse(self.path).path
        with self.state.lock:
            self.state.requests.append((self.command, path, self.headers.get("Authorization")))
        return path

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        path = self._record()
        body = self._body()
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            url = {"url": f"http://{self.headers['Host']}/{repo_id}"}
            if repo_id in self.state.repos:  # the Hub names the existing repository
                return self._json(409, {"error": "You already created this model repo", **url})
            private = request.get("visibility") == "private" or bool(request.get("private"))
            self.state.repos[repo_id] = Repository(private=private)
            return self._json(200, url)
        if path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        parts = path.split("/")  # "", api, models, user, name, preupload|commit, revision
        if len(parts) != 7 or parts[:3] != ["", "api", "models"]:
            return self._error(404, "NotFound")
        repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], unquote(parts[6])
        if repo_id not in self.state.repos:
            return self._error(404, "RepoNotFound")
        if action == "preupload":
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            return self._json(200, {"files": modes})
        if action == "commit":
            return self._commit(repo_id, revision, body)
        return self._error(404, "NotFound")

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self.state.repos[repo_id]
        parent = repo.refs.get(revision)
        files = dict(repo.commits[parent]) if parent else {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._error(400, "Unsupported")
        digest = hashlib.sha1(repr(sorted(files.items())).encode() + (parent or "").encode())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.refs[revision] = sha
        url = f"http://{self.headers['Host']}/{repo_id}/commit/{sha}"
        return self._json(200, {"commitUrl": url, "commitOid": sha, "pullRequestUrl": None})

    def do_HEAD(self) -> None:  # noqa: N802
        self._resolve()

    def do_GET(self) -> None:  # noqa: N802
        self._resolve()

    def _resolve(self) -> None:
        parts = self._record().split("/", 5)  # "", user, name, resolve, revision, file
        if len(parts) != 6 or parts[3] != "resolve":
            return self._error(404, "NotFound")
        repo_id, revision, filename = f"{parts[1]}/{parts[2]}", unquote(parts[4]), parts[5]
        if repo_id not in self.state.repos:
            return self._error(404, "RepoNotFound")
        found = self.state.files(repo_id, revision)
        if found is None:
            return self._error(404, "RevisionNotFound")
        sha, files = found
        if filename not in files:
            return self._error(404, "EntryNotFound")
        content = files[filename]
        etag = hashlib.sha256(content).hexdigest()
        return self._reply(200, content, {"X-Repo-Commit": sha, "ETag": f'"{etag}"'})


class LocalHub:
    """``with LocalHub() as hub:`` serves on ``hub.url`` until the block ends."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *args) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def paths(self, method: str) -> list[str]:
        return [path for verb, path, _ in self.state.requests if verb == method]
