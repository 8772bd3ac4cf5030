"""A loopback fake of the Hugging Face Hub, for tests (standard library only).

Uploads: enough for `huggingface_hub` 2.x to create a repo, a branch and a commit of regular (non-LFS)
files, and to record what arrived.

    hub = FakeHub(token="hf_...")          # starts on 127.0.0.1, a free port
    ... HfApi(endpoint=hub.url, token=...).upload_folder(...)
    hub.files("me/model")                  # {path: bytes} at the head of "main"
    hub.close()

Downloads: `hub.serve(repo_id, {path: bytes}, repo_type="model"|"dataset")` publishes a read-only repo
(one commit) that `from_pretrained` and `datasets.load_dataset` fetch through `HF_ENDPOINT=hub.url`:
repo info (`/api/{models,datasets}/ID[/revision/REV]`), listings (`/tree/REV[/PATH]`, `/paths-info/REV`)
and `resolve` downloads (HEAD and GET, byte ranges) with the headers `huggingface_hub.file_download`
checks: `X-Repo-Commit`, `ETag` (the file's git blob id, as the Hub sends for regular files) and
`Content-Length`. Missing repos, revisions and files answer 404 with the Hub's `X-Error-Code`
(RepoNotFound, RevisionNotFound, EntryNotFound), so the libraries raise their usual errors. Reads
need no token (public repos); a wrong token still gets 401.

`hub.fail[kind] = status` makes one kind of request ("create", "branch", "preupload", "commit",
"resolve", "info") answer with that HTTP status. Every request is kept in `hub.requests`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ROUTE = re.compile(r"^/api/models/(?P<repo>.+?)/(?P<kind>preupload|commit|branch)/(?P<rev>[^/?]+)$")
_REPO = r"(?P<repo>[^/]+/[^/]+)"
INFO = re.compile(rf"^/api/(?P<type>model|dataset)s/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
TREE = re.compile(rf"^/api/(?P<type>model|dataset)s/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
PATHS_INFO = re.compile(rf"^/api/(?P<type>model|dataset)s/{_REPO}/paths-info/(?P<rev>[^/]+)$")
RESOLVE = re.compile(rf"^/(?:(?P<type>dataset)s/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
DATE = "2026-01-01T00:00:00.000Z"


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content (what the Hub sends as a regular file's ETag and oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {name: {path: bytes}}}
        self.served: dict[tuple[str, str], dict] = {}  # (repo_type, repo_id) -> {"sha": str, "files": {path: bytes}}
        self.commits: list[dict] = []
        self.requests: list[dict] = []
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_POST(self):
                hub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["branches"][revision])

    def serve(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model") -> str:
        """Publish a read-only repo of `files` ({path in repo: bytes}) at one commit; returns its sha."""
        sha = hashlib.sha1(json.dumps([repo_type, repo_id, sorted((p, git_blob_id(b)) for p, b in files.items())]).encode()).hexdigest()
        with self.lock:
            self.served[(repo_type, repo_id)] = {"sha": sha, "files": dict(files)}
        return sha

    def downloads(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """The files of a served repo fetched with GET, in order."""
        prefix = ("/datasets/" if repo_type == "dataset" else "/") + f"{repo_id}/resolve/"
        return [r["path"][len(prefix):].split("/", 1)[1] for r in self.requests if r["method"] == "GET" and r["path"].startswith(prefix)]

    # ---------------------------------------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _missing(self, h: BaseHTTPRequestHandler, code: str, message: str, sha: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if sha:
            headers["X-Repo-Commit"] = sha
        return self._reply(h, 401 if code == "RepoNotFound" else 404, {"error": message}, headers)

    def _served(self, h: BaseHTTPRequestHandler, match: re.Match):
        """The served repo and the revision a read names, or None after answering the 404 / 401."""
        repo_type = match["type"] or "model"
        repo = self.served.get((repo_type, match["repo"]))
        if repo is None:  # the Hub answers 401 for a repo it does not know (or you may not see)
            self._missing(h, "RepoNotFound", f"Repository Not Found for url: {h.path}.")
            return None
        rev = unquote(match["rev"] or "main")
        if rev not in ("main", repo["sha"]):
            self._missing(h, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo

    @staticmethod
    def _entry(path: str, data: bytes | None) -> dict:
        if data is None:
            return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}

    @staticmethod
    def _folders(files: dict[str, bytes]) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    def _read(self, h: BaseHTTPRequestHandler, method: str, path: str, query: str, body: bytes) -> bool:
        """Answer a download-side request; False when the path is not one."""
        if method in ("GET", "HEAD") and (match := RESOLVE.match(path)):
            if "resolve" in self.fail:
                self._reply(h, self.fail["resolve"], {"error": "resolve refused by the fake hub"})
                return True
            if (repo := self._served(h, match)) is None:
                return True
            name, sha = unquote(match["path"]), repo["sha"]
            data = repo["files"].get(name)
            if data is None:
                self._missing(h, "EntryNotFound", f"{name} does not exist on \"main\"", sha)
                return True
            status, part = 200, data
            ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", h.headers.get("Range") or "")
            if ranged and data:
                start = int(ranged[1]) if ranged[1] else max(0, len(data) - int(ranged[2]))
                end = min(int(ranged[2]), len(data) - 1) if ranged[1] and ranged[2] else len(data) - 1
                status, part = 206, data[start:end + 1]
            h.send_response(status)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(part)))
            h.send_header("ETag", f'"{git_blob_id(data)}"')
            h.send_header("X-Repo-Commit", sha)
            h.send_header("Accept-Ranges", "bytes")
            if status == 206:
                h.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(data)}")
            h.end_headers()
            if method == "GET":
                h.wfile.write(part)
            return True
        if method == "GET" and (match := INFO.match(path)):
            if "info" in self.fail:
                self._reply(h, self.fail["info"], {"error": "info refused by the fake hub"})
                return True
            if (repo := self._served(h, match)) is None:
                return True
            files = repo["files"]
            info = {"_id": repo["sha"][:24], "id": match["repo"], "sha": repo["sha"], "private": False, "gated": False,
                    "disabled": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": DATE, "createdAt": DATE,
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                    "usedStorage": sum(len(b) for b in files.values())}
            if match["type"] == "model" and "config.json" in files:
                config = json.loads(files["config.json"])
                info["config"] = {"architectures": config.get("architectures"), "model_type": config.get("model_type")}
            self._reply(h, 200, info)
            return True
        if method == "GET" and (match := TREE.match(path)):
            if (repo := self._served(h, match)) is None:
                return True
            files, folders = repo["files"], self._folders(repo["files"])
            where = unquote(match["path"] or "").strip("/")
            if where and where not in folders:
                self._missing(h, "EntryNotFound", f"{where} does not exist on \"main\"", repo["sha"])
                return True
            recursive = parse_qs(query).get("recursive", ["false"])[0].lower() == "true"
            prefix = f"{where}/" if where else ""
            entries = []
            for name in sorted(set(files) | folders):
                rest = name[len(prefix):]
                if name.startswith(prefix) and rest and (recursive or "/" not in rest):
                    entries.append(self._entry(name, None if name in folders else files[name]))
            self._reply(h, 200, entries)
            return True
        if method == "POST" and (match := PATHS_INFO.match(path)):
            if (repo := self._served(h, match)) is None:
                return True
            if h.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body or b"{}").get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            files, folders = repo["files"], self._folders(repo["files"])
            entries = [self._entry(p, None if p in folders else files[p]) for p in (q.strip("/") for q in paths)
                       if p in files or p in folders]
            self._reply(h, 200, entries)
            return True
        return False

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        url = urlsplit(h.path)
        path = url.path
        with self.lock:
            self.requests.append({"method": method, "path": path, "auth": h.headers.get("Authorization"), "body": body})
        auth = h.headers.get("Authorization")
        reading = method in ("GET", "HEAD") or PATHS_INFO.match(path)
        if auth != f"Bearer {self.token}" and not (reading and auth is None):  # public repos read without a token
            return self._reply(h, 401, {"error": "Invalid credentials in Authorization header"})
        if reading and self._read(h, method, path, url.query, body):
            return None
        if method == "POST" and path == "/api/validate-yaml":
            return self._reply(h, 200, {"errors": [], "warnings": []})
        if method == "POST" and path == "/api/repos/create":
            if "create" in self.fail:
                return self._reply(h, self.fail["create"], {"error": "refused by the fake hub"})
            payload = json.loads(body or b"{}")
            repo_id = "/".join(p for p in (payload.get("organization"), payload["name"]) if p)
            url = f"{self.url}/{repo_id}"
            with self.lock:
                if repo_id in self.repos:
                    return self._reply(h, 409, {"error": "You already created this model repo", "url": url})
                self.repos[repo_id] = {"private": payload.get("visibility") == "private" or payload.get("private") is True,
                                       "payload": payload, "branches": {"main": {}}}
            return self._reply(h, 200, {"url": url, "name": repo_id})
        match = ROUTE.match(path)
        if method == "POST" and match:
            repo_id, kind, rev = match["repo"], match["kind"], unquote(match["rev"])
            if kind in self.fail:
                return self._reply(h, self.fail[kind], {"error": f"{kind} refused by the fake hub"})
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._reply(h, 404, {"error": f"Repository {repo_id} not found"})
            if kind == "branch":
                with self.lock:
                    if rev in repo["branches"]:
                        return self._reply(h, 409, {"error": "branch exists"})
                    repo["branches"][rev] = dict(repo["branches"]["main"])
                return self._reply(h, 200, {})
            if rev not in repo["branches"]:
                return self._reply(h, 404, {"error": f"Revision {rev} not found"})
            if kind == "preupload":
                files = json.loads(body)["files"]
                return self._reply(h, 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]})
            # commit: NDJSON, a header line then one line per file (base64 content)
            header, added = {}, {}
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if item["key"] == "header":
                    header = item["value"]
                elif item["key"] == "file":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:
                    return self._reply(h, 400, {"error": f"the fake hub takes regular files only, got {item['key']}"})
            with self.lock:
                repo["branches"][rev].update(added)
                self.commits.append({"repo": repo_id, "revision": rev, "summary": header.get("summary"), "files": added})
            oid = f"{len(self.commits):040x}"
            return self._reply(h, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid})
        return self._reply(h, 404, {"error": f"not found: {method} {path}"})
