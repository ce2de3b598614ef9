"""Resumable downloads against a loopback HTTP server that can break connections and ignore ranges."""
from __future__ import annotations

import gzip
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import harness.data.download as dl
from harness.data.download import CorruptFileError, DownloadError, RawFiles, download, verify_gzip
from harness.paths import data_dir


class FileServer:
    """Serves ``files`` (path -> bytes) with ``Range: bytes=N-`` support.

    ``drops``: per request, in order, send only this many body bytes then close the
    connection (the Content-Length still announces the whole body). ``ignore_range``:
    answer 200 with the whole file even when a range was asked for.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.drops: list[int] = []
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drops:
                    self.wfile.write(body[:server.drops.pop(0)])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the network breaks mid-transfer
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


PAYLOAD = os.urandom(300_000)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FileServer({"/Electronics.csv.gz": PAYLOAD}) as srv:
        yield srv


@pytest.fixture
def bars(monkeypatch):
    """Replace tqdm in the download module with a recorder of (total, initial, bytes updated)."""
    made = []

    class Bar:
        def __init__(self, total=None, initial=0, **kwargs):
            self.total, self.initial, self.n = total, initial, 0
            made.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            pass

    monkeypatch.setattr(dl, "tqdm", Bar)
    return made


def test_broken_download_resumes_to_the_exact_bytes(server, tmp_path, bars):
    server.drops = [100_000]
    dest = tmp_path / "Electronics.csv.gz"
    assert download(f"{server.url}/Electronics.csv.gz", dest, backoff=0, chunk_size=8192, timeout=5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()
    (_, first), (_, second) = server.requests
    assert first is None and second == "bytes=100000-"
    # progress: the resumed bar starts where the broken one stopped and ends at the total
    assert [b.total for b in bars] == [len(PAYLOAD)] * 2
    assert bars[0].initial == 0 and bars[0].n == 100_000
    assert bars[1].initial == 100_000 and bars[1].initial + bars[1].n == len(PAYLOAD)


def test_part_file_survives_a_failed_call_and_the_next_call_resumes(server, tmp_path, bars):
    server.drops = [50_000]
    dest = tmp_path / "Electronics.csv.gz"
    with pytest.raises(DownloadError, match="stay in"):
        download(f"{server.url}/Electronics.csv.gz", dest, retries=0, timeout=5)
    assert not dest.exists() and dest.with_name(dest.name + ".part").stat().st_size == 50_000
    download(f"{server.url}/Electronics.csv.gz", dest, timeout=5)
    assert dest.read_bytes() == PAYLOAD and server.requests[-1][1] == "bytes=50000-"


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, bars):
    server.ignore_range = True
    dest = tmp_path / "Electronics.csv.gz"
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes of another version")
    download(f"{server.url}/Electronics.csv.gz", dest, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0][1] == "bytes=30-"  # asked to resume, got 200: the part file was rewritten
    assert bars[0].initial == 0 and bars[0].n == len(PAYLOAD)


def test_complete_part_file_is_finished_on_416(server, tmp_path, bars):
    dest = tmp_path / "Electronics.csv.gz"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD)
    download(f"{server.url}/Electronics.csv.gz", dest, timeout=5, expected_size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_existing_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "Electronics.csv.gz"
    dest.write_bytes(b"placed by hand")
    assert download(f"{server.url}/Electronics.csv.gz", dest) == dest
    assert dest.read_bytes() == b"placed by hand" and server.requests == []


def test_missing_file_fails_at_once_with_the_manual_hint(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(f"{server.url}/nope.gz", tmp_path / "nope.gz", backoff=0, timeout=5)
    assert len(server.requests) == 1 and "place it at" in str(info.value)


def test_size_mismatch_with_expected_size_is_an_error(server, tmp_path, bars):
    dest = tmp_path / "Electronics.csv.gz"
    with pytest.raises(DownloadError, match="expected 12"):
        download(f"{server.url}/Electronics.csv.gz", dest, expected_size=12, timeout=5)
    assert not dest.exists()


def test_unreachable_host_says_where_to_place_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/amazon_2023/Electronics.csv.gz"
    dest = data_dir() / "raw" / "amazon-electronics" / "Electronics.csv.gz"
    with pytest.raises(DownloadError) as info:
        download(url, dest, retries=1, backoff=0, timeout=2)
    message = str(info.value)
    assert url in message
    assert os.path.join("raw", "amazon-electronics", "Electronics.csv.gz") in message
    assert "prepare" in message and not dest.exists()


def test_verify_gzip_detects_truncation(tmp_path):
    whole = tmp_path / "whole.jsonl.gz"
    whole.write_bytes(gzip.compress(b'{"a": 1}\n' * 10_000))
    assert verify_gzip(whole) == 90_000
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="truncated"):
        verify_gzip(cut)
    not_gzip = tmp_path / "page.jsonl.gz"
    not_gzip.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(CorruptFileError, match="delete it|Delete it"):
        verify_gzip(not_gzip)


def test_raw_files_fetch_into_data_raw_and_check_gzip(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    good = gzip.compress(b"user_id,parent_asin,rating,timestamp\n")
    with FileServer({"/a/Electronics.csv.gz": good, "/a/meta_Electronics.jsonl.gz": good[:15]}) as srv:
        files = RawFiles("amazon-electronics", (f"{srv.url}/a/Electronics.csv.gz",))
        assert files.paths() == [tmp_path / "raw" / "amazon-electronics" / "Electronics.csv.gz"]
        assert files.fetch()[0].read_bytes() == good
        files.fetch()
        assert len(srv.requests) == 1  # already there: no second download
        # a truncated file served whole (Content-Length matches) is caught by the gzip check and removed
        broken = RawFiles("amazon-electronics", (f"{srv.url}/a/meta_Electronics.jsonl.gz",))
        with pytest.raises(CorruptFileError, match="run the same command again"):
            broken.fetch()
        assert not broken.paths()[0].exists()


def test_raw_files_reuse_a_shared_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    shared = tmp_path / "raw" / "amazon-electronics" / "meta_Electronics.jsonl.gz"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"x")
    files = RawFiles("amazon-electronics-raw", ("http://127.0.0.1:9/x/meta_Electronics.jsonl.gz",),
                     shared_with=("amazon-electronics",))
    assert files.paths() == [shared] and files.fetch() == [shared]
