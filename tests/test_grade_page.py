"""The grading page in a real browser: Debian's chromium, headless, driven by Playwright's Python API
(``executable_path``; Playwright's own browser download is not used). Needs ``chromium`` on PATH (setup.sh
installs it) and the ``playwright`` package (the dev extra); without them these tests skip and say why."""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from grade_corpus import Corpus, build_corpus, stand_in_notebook
from hw3grade.cli import grade

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HW3_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_page():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (bash setup.sh installs Debian's; or set HW3_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Corpus]]:
    """The corpus graded into a folder served on 127.0.0.1 (a PDF opens over http as a grader's would)."""
    corpus = build_corpus(stand_in_notebook(), tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("grade")
    grade([corpus.archive], out, jobs=2, progress=False, echo=lambda line: None)
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", corpus
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _statuses(page) -> list[str]:
    return page.eval_on_selector_all(
        "#grades tbody tr:not(.hidden)", "rows => rows.map(r => r.dataset.status)"
    )


def test_the_table_loads_with_failing_rows_first(browser_page, served) -> None:
    url, corpus = served
    browser_page.goto(url)
    statuses = _statuses(browser_page)
    assert len(statuses) == len(corpus.expected)
    first_ok = statuses.index("ok")
    assert "fail" not in statuses[first_ok:]
    assert statuses[0] == "fail"


def test_sorting_by_a_column_and_back(browser_page, served) -> None:
    url, _ = served
    browser_page.goto(url)
    header = browser_page.locator("#grades thead th", has_text="submission")
    header.click()
    keys = browser_page.eval_on_selector_all(
        "#grades tbody tr", "rows => rows.map(r => r.cells[1].textContent.trim().toLowerCase())"
    )
    assert keys == sorted(keys)
    header.click()
    again = browser_page.eval_on_selector_all(
        "#grades tbody tr", "rows => rows.map(r => r.cells[1].textContent.trim().toLowerCase())"
    )
    assert again == sorted(keys, reverse=True)


def test_the_failing_filter_and_the_text_filter(browser_page, served) -> None:
    url, corpus = served
    browser_page.goto(url)
    browser_page.select_option("#show", "fail")
    shown = _statuses(browser_page)
    assert shown and set(shown) == {"fail"}
    assert len(shown) == sum(e.status == "fail" for e in corpus.expected.values())
    assert browser_page.text_content("#shown") == str(len(shown))
    browser_page.select_option("#show", "all")
    browser_page.fill("#filter", "zip bomb")
    assert len(_statuses(browser_page)) == 1


def test_an_answer_link_opens_the_pdf_at_its_page(browser_page, served) -> None:
    url, corpus = served
    browser_page.goto(url)
    key = next(k for k in corpus.expected if k.startswith("Alice Levi_"))
    link = browser_page.locator(f'tr[data-key="{key}"] td[data-answer="T4"] a.pdf-page')
    assert link.text_content() == "p.8"
    href = link.get_attribute("href")
    assert href.endswith("/submission.pdf#page=8")
    with browser_page.expect_response(lambda response: response.url.endswith("submission.pdf")) as response:
        link.click()
    assert response.value.status == 200
    assert response.value.headers["content-type"] == "application/pdf"
    assert browser_page.url.endswith("submission.pdf#page=8")
