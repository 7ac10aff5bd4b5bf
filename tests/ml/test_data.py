"""ml.data: the three sources, atomic replacement, safe unzipping and validation of data/raw."""

from __future__ import annotations

import functools
import http.server
import io
import socket
import stat
import threading
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from ml import data
from ml.data import DataError, extract_dataset, fetch, find_class_root, validate, validate_or_quarantine
from ml.synthetic import BODIES as CLASSES
from ml.synthetic import generate_dataset
from tests.conftest import REPO_ROOT, image_bytes, make_image


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _quiet(_message: str) -> None:
    pass


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A valid dataset: the 10 classes, 2 small synthetic images each."""
    root = tmp_path / "source"
    generate_dataset(root, per_class=2, size=32, seed=1)
    return root


def _no_leftovers(parent: Path) -> bool:
    return not [p.name for p in parent.iterdir() if p.name.startswith(".")]


# --- folder source --------------------------------------------------------------------------------


def test_folder_source_copies_every_file(dataset, tmp_path):
    out = tmp_path / "data" / "raw"
    report = fetch("folder", out, folder=dataset, log=_quiet)
    assert report.ok and report.counts == {c: 2 for c in CLASSES} and report.total == 20
    assert _files(out) == _files(dataset)
    assert _no_leftovers(out.parent)


def test_missing_folder_says_how_to_fix_and_keeps_existing_data(dataset, tmp_path):
    out = tmp_path / "raw"
    fetch("folder", out, folder=dataset, log=_quiet)
    before = _files(out)
    with pytest.raises(DataError, match="not found.*--folder.*synthetic"):
        fetch("folder", out, folder=tmp_path / "nowhere", log=_quiet)
    assert _files(out) == before
    assert _no_leftovers(tmp_path)


def test_failed_fetch_leaves_previous_data_untouched(dataset, tmp_path):
    out = tmp_path / "raw"
    generate_dataset(out, per_class=1, size=32, seed=9)
    before = _files(out)
    (dataset / "Moon" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="Moon/broken.jpg"):
        fetch("folder", out, folder=dataset, log=_quiet)
    assert _files(out) == before
    assert _no_leftovers(tmp_path)


def test_successful_fetch_replaces_previous_data(dataset, tmp_path):
    out = tmp_path / "raw"
    generate_dataset(out, per_class=1, size=32, seed=9)
    (out / "Earth" / "old_only.jpg").write_bytes(image_bytes(make_image()))
    fetch("folder", out, folder=dataset, log=_quiet)
    assert _files(out) == _files(dataset)
    assert _no_leftovers(tmp_path)


def test_interrupted_fetch_cleans_up_and_keeps_previous_data(dataset, tmp_path, monkeypatch):
    out = tmp_path / "raw"
    fetch("folder", out, folder=dataset, log=_quiet)
    before = _files(out)

    def interrupted(src, dest, **_):
        (dest / "Earth").mkdir(parents=True)
        (dest / "Earth" / "half.jpg").write_bytes(b"\xff\xd8")
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "copy_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch("folder", out, folder=dataset, log=_quiet)
    assert _files(out) == before
    assert _no_leftovers(tmp_path)


def test_swap_puts_the_old_data_back_when_the_second_rename_fails(dataset, tmp_path, monkeypatch):
    out = tmp_path / "raw"
    generate_dataset(out, per_class=1, size=32, seed=9)
    before = _files(out)
    real_replace = data.os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(data.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        fetch("folder", out, folder=dataset, log=_quiet)
    monkeypatch.undo()
    assert _files(out) == before
    assert _no_leftovers(tmp_path)


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(DataError, match="allowed values: folder, url, synthetic"):
        fetch("ftp", tmp_path / "raw")


# --- synthetic source -----------------------------------------------------------------------------


def test_synthetic_source_is_deterministic_by_seed(tmp_path):
    a = fetch("synthetic", tmp_path / "a", per_class=2, size=32, seed=4, log=_quiet)
    fetch("synthetic", tmp_path / "b", per_class=2, size=32, seed=4, log=_quiet)
    fetch("synthetic", tmp_path / "c", per_class=2, size=32, seed=5, log=_quiet)
    assert a.ok and a.counts == {c: 2 for c in CLASSES}
    files_a, files_c = _files(tmp_path / "a"), _files(tmp_path / "c")
    assert files_a == _files(tmp_path / "b")
    assert files_a.keys() == files_c.keys() and all(files_a[k] != files_c[k] for k in files_a)


def test_synthetic_source_rejects_bad_size(tmp_path):
    with pytest.raises(DataError, match="synthetic set.*at least 8"):
        fetch("synthetic", tmp_path / "raw", per_class=1, size=4, log=_quiet)


# --- url source: a zip served over HTTP on loopback -----------------------------------------------


def _zip_of(root: Path, prefix: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in (extra or {}).items():
            zf.writestr(name, content)
        zf.writestr(f"{prefix}/", b"")  # directory entries, as GitHub archives have
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.writestr(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return buffer.getvalue()


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 at a free port; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_url_source_downloads_and_finds_the_class_folders(dataset, tmp_path, http_server):
    base, www = http_server
    extra = {
        "a-guide-to-mlops-data/README.md": b"backup of the data",
        "a-guide-to-mlops-data/.gitignore": b"",
    }
    (www / "data.zip").write_bytes(_zip_of(dataset, "a-guide-to-mlops-data/raw", extra))
    messages: list[str] = []
    out = tmp_path / "data" / "raw"
    report = fetch("url", out, url=f"{base}/data.zip", log=messages.append)
    assert report.ok and report.total == 20
    assert _files(out) == _files(dataset)
    assert any("downloaded" in m and "100%" in m for m in messages), messages
    assert any("a-guide-to-mlops-data/raw/" in m and "skipping 2" in m for m in messages), messages
    assert _no_leftovers(out.parent)


def test_url_not_found_is_a_clear_error(http_server, tmp_path):
    base, _ = http_server
    with pytest.raises(DataError, match="HTTP 404.*data.url"):
        fetch("url", tmp_path / "raw", url=f"{base}/missing.zip", log=_quiet)
    assert not (tmp_path / "raw").exists()


def test_url_serving_html_instead_of_zip_is_a_clear_error(http_server, tmp_path):
    base, www = http_server
    (www / "page.html").write_text("<html>rate limited</html>")
    with pytest.raises(DataError, match="not a zip archive"):
        fetch("url", tmp_path / "raw", url=f"{base}/page.html", log=_quiet)
    assert _no_leftovers(tmp_path)


def test_unreachable_url_suggests_offline_sources(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(DataError, match="could not reach.*--source folder or --source synthetic"):
        fetch("url", tmp_path / "raw", url=f"http://127.0.0.1:{port}/data.zip", log=_quiet)


def test_only_http_urls_are_accepted(tmp_path):
    with pytest.raises(DataError, match="http"):
        fetch("url", tmp_path / "raw", url=f"file://{tmp_path}/x.zip", log=_quiet)


# --- safe extraction ------------------------------------------------------------------------------


def _zip_with(tmp_path: Path, name: str, *, symlink: bool = False) -> Path:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/raw/Earth/ok.jpg", image_bytes(make_image()))
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if symlink else b"payload")
    return path


@pytest.mark.parametrize(
    ("member", "symlink"),
    [
        ("data/raw/../../escaped.jpg", False),
        ("/tmp/absolute.jpg", False),
        ("data/raw/Earth/link.jpg", True),
        ("data\\raw\\..\\..\\win.jpg", False),
    ],
)
def test_zip_slip_members_reject_the_whole_archive(tmp_path, member, symlink):
    archive = _zip_with(tmp_path, member, symlink=symlink)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match="unsafe"):
        extract_dataset(archive, dest, log=_quiet)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escaped.jpg").exists()


def test_archive_too_large_when_unpacked_is_refused(dataset, tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip_of(dataset, "raw"))
    with pytest.raises(DataError, match="unpacks to .* limit"):
        extract_dataset(archive, tmp_path, log=_quiet, max_bytes=1000)


def test_find_class_root_prefers_the_best_match_then_the_shallowest():
    names = [f"top/raw/{c}/x.jpg" for c in CLASSES] + ["top/docs/Earth/a.png", "top/README.md"]
    names += [f"__MACOSX/top/raw/{c}/._x.jpg" for c in CLASSES]
    assert find_class_root(names) == PurePosixPath("top/raw")
    flat = [f"{c}/img.jpg" for c in CLASSES] + [f"backup/{c}/img.jpg" for c in CLASSES]
    assert find_class_root(flat) == PurePosixPath(".")


def test_find_class_root_with_pinned_classes_prefers_their_names():
    names = [f"top/raw/{c}/x.jpg" for c in ("Earth", "Mars")] + [f"top/other/{c}/x.jpg" for c in "abc"]
    assert find_class_root(names) == PurePosixPath("top/other")  # the most image folders
    assert find_class_root(names, ["Earth", "Mars"]) == PurePosixPath("top/raw")


def test_archive_without_class_folders_names_what_it_holds():
    with pytest.raises(DataError, match="no sub-folders of images.*holds: project"):
        find_class_root(["project/src/main.py", "project/README.md"])
    with pytest.raises(DataError, match="no folders named after the classes.*holds: project"):
        find_class_root(["project/src/main.jpg"], CLASSES)


# --- validation -----------------------------------------------------------------------------------


def test_corrupt_truncated_empty_and_non_image_files_are_named(dataset):
    jpeg = image_bytes(make_image(size=(64, 64)))
    (dataset / "Earth" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (dataset / "Mars" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (dataset / "Moon" / "empty.jpg").write_bytes(b"")
    (dataset / "Venus" / "notes.txt").write_text("not an image")
    report = validate(dataset)
    assert not report.ok
    bad = dict(report.bad_files)
    assert set(bad) == {"Earth/corrupt.jpg", "Mars/truncated.jpg", "Moon/empty.jpg", "Venus/notes.txt"}
    assert "empty" in bad["Moon/empty.jpg"] and "truncated" in bad["Mars/truncated.jpg"]
    assert report.counts["Earth"] == 2 and report.total == 20
    message = report.error_message("data/raw")
    for name in bad:
        assert name in message
    assert "4 problems" in message and "--quarantine" in message


def test_unexpected_missing_empty_and_stray_entries_are_reported(dataset):
    (dataset / "Pluto").rename(dataset / "Plutoo")
    (dataset / "Venus" / "Venus_0.jpg").unlink()
    (dataset / "Venus" / "Venus_1.jpg").unlink()
    (dataset / "README.md").write_text("loose file")
    (dataset / "Earth" / "nested").mkdir()
    (dataset / "provenance.jsonl").write_text("")  # labelling's manifest belongs there
    report = validate(dataset, CLASSES)
    assert report.missing == ["Pluto"] and report.unexpected == ["Plutoo"] and report.empty == ["Venus"]
    assert report.stray == ["README.md", "Earth/nested/"]
    problems = "\n".join(report.problems())
    assert "Plutoo/: unexpected class folder (did you mean Pluto?)" in problems
    assert "Pluto/: class folder is missing" in problems
    assert "Venus/: class folder holds no image" in problems
    assert "README.md: not inside a class folder" in problems
    table = report.table()
    assert "missing" in table and "unexpected" in table


def test_a_flat_folder_of_images_is_summarised_not_listed_in_full(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(25):
        (flat / f"img_{i:02d}.jpg").write_bytes(image_bytes(make_image()))
    message = validate(flat, CLASSES).error_message("flat")
    assert "35 problems" in message  # 25 stray files + 10 missing classes
    assert "img_09.jpg: not inside a class folder" in message and "img_10.jpg" not in message
    assert "... and 15 more entries outside the class folders" in message
    assert "--quarantine" not in message, "quarantine only helps with undecodable files"


def test_greyscale_rgba_palette_png_and_odd_sizes_are_accepted(dataset):
    (dataset / "Earth" / "grey.jpg").write_bytes(image_bytes(make_image("L", (37, 91))))
    (dataset / "Mars" / "alpha.png").write_bytes(image_bytes(make_image("RGBA", (200, 130)), "PNG"))
    (dataset / "Moon" / "palette.png").write_bytes(image_bytes(make_image("P", (17, 17)), "PNG"))
    (dataset / "Venus" / "png_named.jpg").write_bytes(image_bytes(make_image("RGB", (129, 128)), "PNG"))
    report = validate(dataset)
    assert report.ok, report.problems()
    assert report.counts["Earth"] == 3 and report.counts["Mars"] == 3 and report.total == 24


def test_validate_of_missing_folder_reports_every_class_missing(tmp_path):
    report = validate(tmp_path / "nothing", CLASSES)
    assert not report.ok and report.missing == list(CLASSES)
    report = validate(tmp_path / "nothing")
    assert not report.ok and "no class folders" in report.error_message("nothing")


def test_without_a_pin_the_folders_are_the_classes(dataset):
    (dataset / "Pluto").rename(dataset / "Ceres")
    report = validate(dataset)
    assert report.ok, report.problems()
    assert report.classes == tuple(sorted([*(c for c in CLASSES if c != "Pluto"), "Ceres"]))
    assert report.counts["Ceres"] == 2


def test_quarantine_moves_and_lists_bad_files_and_keeps_good_ones(dataset, tmp_path):
    (dataset / "Earth" / "corrupt.jpg").write_bytes(b"garbage")
    (dataset / "Saturn" / "empty.jpg").write_bytes(b"")
    quarantine = tmp_path / "quarantine"
    report = validate_or_quarantine(dataset, quarantine_dir=quarantine)
    assert report.ok and report.total == 20
    assert sorted(p.relative_to(quarantine).as_posix() for p in report.quarantined) == [
        "Earth/corrupt.jpg",
        "Saturn/empty.jpg",
    ]
    assert (quarantine / "Earth" / "corrupt.jpg").read_bytes() == b"garbage"
    assert not (dataset / "Earth" / "corrupt.jpg").exists()


def test_fetch_with_quarantine_uses_the_rest_and_keeps_the_bad_file(dataset, tmp_path):
    (dataset / "Earth" / "corrupt.jpg").write_bytes(b"garbage")
    out, quarantine = tmp_path / "raw", tmp_path / "quarantine"
    report = fetch("folder", out, folder=dataset, quarantine_dir=quarantine, log=_quiet)
    assert report.ok and not (out / "Earth" / "corrupt.jpg").exists()
    assert (quarantine / "Earth" / "corrupt.jpg").read_bytes() == b"garbage"
    assert (dataset / "Earth" / "corrupt.jpg").exists(), "the source must never be modified"


# --- command line ---------------------------------------------------------------------------------


def test_cli_validate_prints_counts_or_names_bad_files(dataset, capsys):
    assert data.main(["validate", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "Earth" in out and "total" in out and "OK, 20 images in 10 classes" in out
    (dataset / "Neptune" / "bad.jpg").write_bytes(b"nope")
    assert data.main(["validate", str(dataset)]) == 1
    assert "Neptune/bad.jpg: not a recognised image format" in capsys.readouterr().err


def test_cli_fetch_synthetic_then_if_missing_keeps_it(tmp_path, capsys):
    out = tmp_path / "raw"
    params = str(REPO_ROOT / "params.yaml")
    args = ["fetch", "--source", "synthetic", "--per-class", "2", "--size", "32", "--params", params]
    assert data.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20 images in 10 classes from source 'synthetic'" in printed and "total" in printed
    before = _files(out)
    assert data.main([*args, "--seed", "99", "--out", str(out), "--if-missing"]) == 0
    assert "kept it" in capsys.readouterr().out
    assert _files(out) == before


def test_cli_reports_bad_params_and_missing_folder(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  source: ftp\n")
    assert data.main(["fetch", "--params", str(bad), "--out", str(tmp_path / "raw")]) == 1
    assert "data.source" in capsys.readouterr().err
    args = ["fetch", "--source", "folder", "--folder", str(tmp_path / "none"), "--out", str(tmp_path / "raw")]
    assert data.main([*args, "--params", str(REPO_ROOT / "params.yaml")]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_missing_default_folder_falls_back_to_archive_then_synthetic(tmp_path, http_server, capsys):
    base, _ = http_server
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data:\n  source: folder\n  folder: {tmp_path / 'absent'}\n  url: {base}/missing.zip\n"
        "  synthetic_per_class: 2\n  synthetic_size: 32\n"
    )
    out = tmp_path / "raw"
    assert data.main(["fetch", "--params", str(params), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "does not exist here; trying the guide's archive" in printed
    assert "source 'url' failed" in printed and "falling back to 'synthetic'" in printed
    assert "20 images in 10 classes from source 'synthetic'" in printed


def test_cli_existing_folder_with_bad_files_does_not_fall_back(dataset, tmp_path, capsys):
    (dataset / "Mars" / "broken.jpg").write_bytes(b"not a jpeg")
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  source: folder\n  folder: {dataset}\n  url: http://127.0.0.1:9/never.zip\n")
    assert data.main(["fetch", "--params", str(params), "--out", str(tmp_path / "raw")]) == 1
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "falling back" not in captured.out
    assert not (tmp_path / "raw").exists()


def test_cli_validate_and_fetch_follow_the_pin_in_params(dataset, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  classes: [Earth, Mars, Ceres]\n")
    assert data.main(["validate", str(dataset), "--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "Ceres/: class folder is missing" in err and "Venus/: unexpected class folder" in err
    out = tmp_path / "raw"
    assert data.main(["fetch", "--source", "folder", "--folder", str(dataset), "--out", str(out),
                      "--params", str(params)]) == 1
    assert "Ceres/: class folder is missing" in capsys.readouterr().err and not out.exists()
