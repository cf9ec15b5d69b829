"""Shared fixtures: where the real WikiText-2 files are, and a loopback HTTP server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HW3_SHARED_DATA", REPO.parent / "shared" / "data" / "wikitext-2"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real WikiText-2 files (../shared/data/wikitext-2). Missing files are an error, not a skip."""
    if not (SHARED_DATA / "wiki.train.tokens").is_file():
        pytest.fail(f"real WikiText-2 files not found in {SHARED_DATA} (set HW3_SHARED_DATA)")
    return SHARED_DATA


class LoopbackServer:
    """Serves registered byte payloads on 127.0.0.1; a route may lie about its length (truncation)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits.append(self.path)
                status, body, claimed = server.routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, body: bytes, status: int = 200, claimed_length: int | None = None) -> str:
        self.routes[path] = (status, body, claimed_length)
        return self.url(path)


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path):
    """One real quick-profile build (render, execute, theory, report, zip) into a temporary build folder,
    shared by the tests that read its outputs. Minutes: mark its users e2e and slow."""
    from hw3build.build import build

    lines: list[str] = []
    build_dir = tmp_path_factory.mktemp("quick-build")
    result = build(
        REPO / "submission.toml",
        profile="quick",
        data_dir=real_data_dir,
        build_dir=build_dir,
        project_root=REPO,
        echo=lines.append,
    )
    return result
