"""WikiText-2 acquisition: offline folder, cache, and downloads from a loopback HTTP server."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest
from hw3 import download
from hw3.download import DataError, extract_wikitext, sha256_file, verify_folder, wikitext2_dir

FILES = {
    "wiki.train.tokens": " = Train = \n \n the cat sat on the mat . \n",
    "wiki.valid.tokens": " = Valid = \n the dog . \n",
    "wiki.test.tokens": " = Test = \n a bird . \n",
}


@pytest.fixture(autouse=True)
def no_data_environment(monkeypatch) -> None:
    """These tests choose the source themselves: CI's offline folder and offline flag must not leak in."""
    for name in ("HW3_DATA_DIR", "HW3_OFFLINE", "HW3_WIKITEXT_URLS", "HW3_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def synthetic_hashes(monkeypatch, tmp_path) -> dict[str, bytes]:
    """Make the downloader expect the small synthetic files above instead of the real release."""
    contents = {name: text.encode() for name, text in FILES.items()}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(download, "FILE_SHA256", {n: sha256_file(tmp_path / n) for n in contents})
    for name in contents:
        (tmp_path / name).unlink()
    return contents


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def release_zip(contents: dict[str, bytes]) -> bytes:
    return make_zip({f"wikitext-2/{name}": data for name, data in contents.items()})


def test_offline_folder_is_verified(synthetic_hashes, tmp_path) -> None:
    folder = tmp_path / "offline"
    folder.mkdir()
    for name, data in synthetic_hashes.items():
        (folder / name).write_bytes(data)
    assert wikitext2_dir(data_dir=folder) == folder
    (folder / "wiki.valid.tokens").write_bytes(b"tampered\n")
    with pytest.raises(DataError, match=r"wiki\.valid\.tokens.*sha256"):
        wikitext2_dir(data_dir=folder)
    (folder / "wiki.test.tokens").unlink()
    with pytest.raises(DataError, match=r"wiki\.valid\.tokens.*sha256.*no wiki\.test\.tokens") as info:
        verify_folder(folder)
    assert "wiki.train.tokens is not" not in str(info.value)  # the good file is not blamed


def test_env_variable_names_the_offline_folder(synthetic_hashes, tmp_path, monkeypatch) -> None:
    for name, data in synthetic_hashes.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setenv("HW3_DATA_DIR", str(tmp_path))
    assert wikitext2_dir() == tmp_path


def test_good_archive_is_downloaded_cached_and_reused(synthetic_hashes, http_server, tmp_path) -> None:
    url = http_server.add("/wikitext-2-v1.zip", release_zip(synthetic_hashes))
    cache = tmp_path / "cache"
    folder = wikitext2_dir(cache_dir=cache, urls=[url])
    assert folder == cache / "wikitext-2"
    assert (folder / "wiki.train.tokens").read_bytes() == synthetic_hashes["wiki.train.tokens"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # only the three files, flat
    assert wikitext2_dir(cache_dir=cache, urls=[url]) == folder
    assert http_server.hits == ["/wikitext-2-v1.zip"]  # the second call used the cache


def test_corrupted_archive_is_refused_and_next_mirror_used(synthetic_hashes, http_server, tmp_path) -> None:
    bad = dict(synthetic_hashes, **{"wiki.test.tokens": b" = Test = \n a fish . \n"})
    corrupted = http_server.add("/bad.zip", release_zip(bad))
    good = http_server.add("/good.zip", release_zip(synthetic_hashes))
    folder = wikitext2_dir(cache_dir=tmp_path, urls=[corrupted, good])
    assert http_server.hits == ["/bad.zip", "/good.zip"]
    assert verify_folder(folder) == folder
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("wikitext-2", ".lock")]
    assert leftovers == []  # the bad download was deleted


def test_every_mirror_bad_names_file_and_hashes(synthetic_hashes, http_server, tmp_path) -> None:
    bad = dict(synthetic_hashes, **{"wiki.test.tokens": b"wrong\n"})
    url = http_server.add("/bad.zip", release_zip(bad))
    with pytest.raises(DataError) as info:
        wikitext2_dir(cache_dir=tmp_path, urls=[url])
    message = str(info.value)
    assert "wiki.test.tokens" in message and download.FILE_SHA256["wiki.test.tokens"] in message
    assert "--data-dir" in message  # says how to provide the data instead
    assert not (tmp_path / "wikitext-2").exists()


def test_truncated_transfer_is_never_used(synthetic_hashes, http_server, tmp_path) -> None:
    body = release_zip(synthetic_hashes)
    url = http_server.add("/cut.zip", body[: len(body) // 2], claimed_length=len(body))
    with pytest.raises(DataError, match="could not download"):
        wikitext2_dir(cache_dir=tmp_path, urls=[url])
    assert not (tmp_path / "wikitext-2").exists()


def test_http_error_then_good_mirror(synthetic_hashes, http_server, tmp_path) -> None:
    forbidden = http_server.add("/forbidden.zip", b"Forbidden", status=403)
    good = http_server.add("/good.zip", release_zip(synthetic_hashes))
    assert wikitext2_dir(cache_dir=tmp_path, urls=[forbidden, good]).is_dir()


@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/evil", "wikitext-2/../../evil", "..\\win.txt"])
def test_path_escaping_member_is_refused(synthetic_hashes, http_server, tmp_path, evil: str) -> None:
    members = {f"wikitext-2/{n}": d for n, d in synthetic_hashes.items()} | {evil: b"x"}
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip(members))
    with pytest.raises(DataError, match="outside"):
        extract_wikitext(archive, tmp_path / "out")
    url = http_server.add("/evil.zip", make_zip(members))
    with pytest.raises(DataError, match="outside"):
        wikitext2_dir(cache_dir=tmp_path / "cache", urls=[url])
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "evil").exists()


def test_damaged_cache_is_fetched_again(synthetic_hashes, http_server, tmp_path) -> None:
    url = http_server.add("/good.zip", release_zip(synthetic_hashes))
    folder = wikitext2_dir(cache_dir=tmp_path, urls=[url])
    (folder / "wiki.train.tokens").write_bytes(b"damaged")
    assert wikitext2_dir(cache_dir=tmp_path, urls=[url]) == folder
    assert len(http_server.hits) == 2
    assert verify_folder(folder) == folder


def test_offline_without_cache_says_how_to_provide_data(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HW3_DATA_DIR", raising=False)
    monkeypatch.setenv("HW3_OFFLINE", "1")
    with pytest.raises(DataError, match="HW3_DATA_DIR"):
        wikitext2_dir(cache_dir=tmp_path)


def test_no_network_error_says_how_to_provide_data(tmp_path) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(DataError, match="--data-dir"):
        wikitext2_dir(cache_dir=tmp_path, urls=["http://127.0.0.1:9/wikitext-2-v1.zip"])


@pytest.mark.e2e
def test_real_release_archive_over_http(real_data_dir: Path, http_server, tmp_path) -> None:
    contents = {name: (real_data_dir / name).read_bytes() for name in FILES}
    url = http_server.add("/wikitext-2-v1.zip", release_zip(contents))
    folder = wikitext2_dir(cache_dir=tmp_path, urls=[url])
    for name in FILES:
        assert sha256_file(folder / name) == sha256_file(real_data_dir / name)


@pytest.mark.e2e
def test_real_offline_folder(real_data_dir: Path) -> None:
    assert verify_folder(real_data_dir) == real_data_dir


def test_an_oversized_download_is_stopped_before_it_is_stored_or_hashed(
    synthetic_hashes, http_server, tmp_path, monkeypatch
) -> None:
    body = release_zip(synthetic_hashes)
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", len(body) - 1)
    huge = http_server.add("/huge.zip", body)
    with pytest.raises(DataError) as refused:
        wikitext2_dir(cache_dir=tmp_path, urls=[huge])
    assert f"larger than {len(body) - 1:,} bytes" in str(refused.value)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".lock"] == []  # nothing kept
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", len(body))
    assert wikitext2_dir(cache_dir=tmp_path, urls=[huge]).is_dir()


def test_an_oversized_archive_member_is_refused(synthetic_hashes, http_server, tmp_path, monkeypatch) -> None:
    bomb = dict(synthetic_hashes, **{"wiki.train.tokens": b"x" * 100_000})  # compresses to almost nothing
    url = http_server.add("/bomb.zip", release_zip(bomb))
    monkeypatch.setattr(download, "MAX_MEMBER_BYTES", 50_000)
    with pytest.raises(DataError) as refused:
        wikitext2_dir(cache_dir=tmp_path, urls=[url])
    assert "wiki.train.tokens is larger than 50,000 bytes" in str(refused.value)


def test_a_fresh_machine_without_portalocker_downloads_into_a_new_cache(
    synthetic_hashes, http_server, tmp_path, monkeypatch
) -> None:
    # The notebook on Colab or a grader's Jupyter: no portalocker, no cache folder yet.
    monkeypatch.setitem(sys.modules, "portalocker", None)  # `import portalocker` raises ImportError
    url = http_server.add("/wikitext-2-v1.zip", release_zip(synthetic_hashes))
    cache = tmp_path / "never" / "made"
    assert wikitext2_dir(cache_dir=cache, urls=[url]) == cache / "wikitext-2"
