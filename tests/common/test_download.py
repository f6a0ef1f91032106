"""The downloader against a local HTTP server, offline failure, and `prepare` without ../shared."""
import functools
import http.server
import shutil
import socket
import threading

import pytest

from common_data.cli import nlg_data
from common_data.data.download import DOWNLOADS, DownloadError, download, url_of


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of requested paths) of a file server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (QuietHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, handler.requests
    httpd.shutdown()
    httpd.server_close()


def serve(folder, name, sources):
    """Put `sources` (local file per item of DOWNLOADS[name]) where the server answers for them."""
    for item, source in zip(DOWNLOADS[name], sources):
        target = folder / item.remote
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


def e2e_sources(shared):
    e2e = shared / "datasets/e2e"
    # The full train CSV is not in the mirror: the test set stands in for it.
    return [e2e / "official_testset_w_refs.csv", e2e / "official_devset.csv", e2e / "official_testset_w_refs.csv"]


def test_download_fetches_each_file_once(shared, server, tmp_path):
    base_url, folder, requests = server
    serve(folder, "e2e", e2e_sources(shared))
    root = download("e2e", root=tmp_path / "downloads", base_url=base_url)
    for item, source in zip(DOWNLOADS["e2e"], e2e_sources(shared)):
        assert (root / item.local).read_bytes() == source.read_bytes()
    assert len(requests) == 3
    download("e2e", root=root, base_url=base_url)
    assert len(requests) == 3
    assert not list(root.rglob("*.tmp"))


def test_base_url_from_environment(shared, server, tmp_path, monkeypatch):
    base_url, folder, requests = server
    serve(folder, "gpt2", [shared / "vocab/vocab.json", shared / "vocab/merges.txt"])
    monkeypatch.setenv("NLG_DOWNLOAD_BASE_URL", base_url)
    assert url_of(DOWNLOADS["gpt2"][0]) == f"{base_url}/gpt2/resolve/main/vocab.json"
    root = download("gpt2", root=tmp_path / "downloads")
    assert (root / "gpt2/merges.txt").read_bytes() == (shared / "vocab/merges.txt").read_bytes()
    assert requests == ["/gpt2/resolve/main/vocab.json", "/gpt2/resolve/main/merges.txt"]


def test_missing_remote_file_names_url_and_destination(shared, server, tmp_path):
    base_url, folder, _ = server
    serve(folder, "e2e", e2e_sources(shared)[:2])
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError) as error:
        download("e2e", root=root, base_url=base_url)
    message = str(error.value)
    assert f"{base_url}/tuetschek/e2e-dataset/master/testset_w_refs.csv" in message
    assert str(root / "e2e/official_testset_w_refs.csv") in message
    assert (root / "e2e/official_devset.csv").is_file()
    assert not (root / "e2e/official_testset_w_refs.csv").exists()
    assert not list(root.rglob("*.tmp"))


def test_offline_says_what_to_download_and_where(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError) as error:
        download("dart", root=root, base_url=f"http://127.0.0.1:{closed_port}")
    message = str(error.value)
    assert "could not download" in message and "refused" in message.lower()
    assert "Yale-LILY/dart/master/data/v1.1.1/dart-v1.1.1-full-train.json" in message
    assert str(root / "dart/dart-v1.1.1-full-train.json") in message and "NLG_SHARED_DIR" in message
    assert not root.exists() or not list(root.rglob("*.json"))


def test_webnlg_table_lists_the_mirrors_files(shared):
    mirror = shared / "datasets"
    expected = {str(path.relative_to(mirror)) for path in (mirror / "webnlg/xml_v1.4").rglob("*.xml")}
    assert {item.local for item in DOWNLOADS["webnlg"]} == expected


def test_prepare_without_mirror_downloads_and_samples_train(shared, server, tmp_path, monkeypatch, capsys):
    base_url, folder, _ = server
    serve(folder, "e2e", e2e_sources(shared))
    serve(folder, "gpt2", [shared / "vocab/vocab.json", shared / "vocab/merges.txt"])
    monkeypatch.setenv("NLG_SHARED_DIR", "")
    monkeypatch.setenv("NLG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NLG_DOWNLOAD_BASE_URL", base_url)
    out = tmp_path / "out"
    nlg_data.main(["prepare", "--datasets", "e2e", "--out-root", str(out)])
    printed = capsys.readouterr().out
    assert "passed through" not in printed
    assert str(tmp_path / "cache/downloads/e2e/official_trainset.csv") in printed
    assert (tmp_path / "cache/downloads/gpt2/vocab.json").is_file()
    train = (out / "e2e/sampled/train_formatted.jsonl").read_text(encoding="utf-8").splitlines()
    assert 0.15 * 4693 < len(train) < 0.21 * 4693
    assert len((out / "e2e/encoded/train.jsonl").read_text(encoding="utf-8").splitlines()) == len(train)
