"""A loopback fake of the Hugging Face Hub's upload API, enough for `huggingface_hub` 2.x to create a
repo, a branch and a commit of regular (non-LFS) files — and to record what arrived.

    hub = FakeHub(token="hf_...")          # starts on 127.0.0.1, a free port
    ... HfApi(endpoint=hub.url, token=...).upload_folder(...)
    hub.files("me/model")                  # {path: bytes} at the head of "main"
    hub.close()

`hub.fail[kind] = status` makes one kind of request ("create", "branch", "preupload", "commit")
answer with that HTTP status. A wrong token gets 401. Every request is kept in `hub.requests`.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

ROUTE = re.compile(r"^/api/models/(?P<repo>.+?)/(?P<kind>preupload|commit|branch)/(?P<rev>[^/?]+)$")


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "branches": {name: {path: bytes}}}
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

    # ---------------------------------------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = urlsplit(h.path).path
        with self.lock:
            self.requests.append({"method": method, "path": path, "auth": h.headers.get("Authorization"), "body": body})
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._reply(h, 401, {"error": "Invalid credentials in Authorization header"})
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
