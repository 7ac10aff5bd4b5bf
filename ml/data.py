"""Get the dataset into `data/raw/<Class>/*.jpg` and check it before anything trains.

    python -m ml.data fetch [--source folder|url|synthetic] [--folder P] [--url U] [--out data/raw]
    python -m ml.data validate [DIR] [--quarantine DIR]

Three sources, chosen by `data.source` in params.yaml or `--source`: a local folder, the zip archive of the
guide's `data` branch (downloaded by URL), or the synthetic generator. Whatever the source, the new
copy is built and validated in a temporary folder next to the target and only then swapped in, so a
failed or interrupted fetch leaves the previous `data/raw` exactly as it was.

Validation decodes every file with the same `load_image` that training and serving use. A file that does
not decode is named in the error, never skipped; `--quarantine DIR` instead moves such files there and
lists them, for when the rest of the data should be used anyway. The classes are the folders found, unless
`prepare.classes` in params.yaml pins them (then a missing or unexpected folder is a problem too).
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ml.prepare import IMAGE_SUFFIXES
from ml.preprocess import InvalidImageError, load_image
from ml.provenance import PROVENANCE_FILE

SOURCES = ("folder", "url", "synthetic")
DEFAULT_OUT = Path("data/raw")
#: Refuse archives that would unpack to more than this (the real one is about 10 MB).
MAX_EXTRACTED_BYTES = 2 * 1024**3
DOWNLOAD_TIMEOUT_S = 60
#: A flat folder of 1,500 images would otherwise print 1,500 lines about files outside class folders.
MAX_STRAY_LISTED = 10

Log = Callable[[str], None]


class DataError(RuntimeError):
    """The data could not be fetched or is not usable; the message says what is wrong and what to do."""


def _print(message: str) -> None:
    print(message, flush=True)


# --- validation -----------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """What `validate` found; `ok` only when every file decodes and the class folders are as expected."""

    root: Path
    classes: tuple[str, ...]  # the pinned classes, or the folders found when none are pinned
    counts: dict[str, int] = field(default_factory=dict)  # decodable images per class folder present
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, reason)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)  # files or folders where no image belongs
    quarantined: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        problems = self.bad_files or self.missing or self.unexpected or self.stray or self.empty
        return not (problems or self.no_classes)

    @property
    def no_classes(self) -> bool:
        """Nothing pinned is missing, yet there is no class folder: not a dataset at all."""
        return not self.counts and not self.missing

    @property
    def empty(self) -> list[str]:
        return [c for c in self.classes if c in self.counts and self.counts[c] == 0]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def problems(self) -> list[str]:
        """One line per problem, each saying what to do about it."""
        lines = [f"{path}: {reason}" for path, reason in self.bad_files]
        if self.no_classes:
            lines.append(f"{self.root}: no class folders (expected <Class>/<image> sub-folders)")
        for name in self.unexpected:
            close = difflib.get_close_matches(name, self.classes, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(f"{name}/: unexpected class folder{hint}; rename it to a class or remove it")
        lines += [f"{name}/: class folder is missing" for name in self.missing]
        lines += [f"{name}/: class folder holds no image" for name in self.empty]
        shown = self.stray[:MAX_STRAY_LISTED]
        lines += [f"{name}: not inside a class folder; move it into one or remove it" for name in shown]
        if len(self.stray) > len(shown):
            lines.append(f"... and {len(self.stray) - len(shown)} more entries outside the class folders")
        return lines

    def table(self) -> str:
        width = max([len(c) for c in (*self.classes, *self.counts)] + [5])
        rows = [f"  {'class':<{width}}  images"]
        bad_by_class: dict[str, int] = {}
        for path, _ in self.bad_files:
            bad_by_class[path.split("/")[0]] = bad_by_class.get(path.split("/")[0], 0) + 1
        for name in sorted({*self.classes, *self.counts}):
            if name in self.missing:
                note = "missing"
            elif name in self.unexpected:
                note = f"{self.counts[name]:>6}  unexpected"
            else:
                note = f"{self.counts[name]:>6}"
            if bad_by_class.get(name):
                note += f"  + {bad_by_class[name]} bad"
            rows.append(f"  {name:<{width}}  {note}")
        rows.append(f"  {'total':<{width}}  {self.total:>6}")
        return "\n".join(rows)

    def error_message(self, where: str) -> str:
        problems = self.problems()
        count = sum(map(len, (self.bad_files, self.unexpected, self.missing, self.empty, self.stray)))
        count += self.no_classes
        return (
            f"{where} is not a usable dataset ({count} problem{'s' * (count != 1)}):\n  "
            + "\n  ".join(problems)
            + f"\nExpected one folder per class ({', '.join(self.classes) or 'none found'}), each holding "
            "image files."
            + (
                " Fix or remove the files named above, or rerun with --quarantine DIR to move them aside."
                if self.bad_files
                else ""
            )
        )


def validate(root: Path, classes: Sequence[str] | None = None, *, log: Log | None = None) -> ValidationReport:
    """Decode every file under `root`; with `classes` (a pin), compare the class folders with it."""
    root = Path(root)
    report = ValidationReport(root=root, classes=tuple(classes or ()))
    if not root.is_dir():
        report.missing = list(classes or ())
        return report
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    folders = [p for p in entries if p.is_dir()]
    if classes is None:
        classes = report.classes = tuple(p.name for p in folders)
    report.stray = [p.name for p in entries if not p.is_dir() and p.name != PROVENANCE_FILE]
    report.missing = [c for c in classes if not (root / c).is_dir()]
    report.unexpected = [p.name for p in folders if p.name not in classes]
    for folder in folders:
        good = 0
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            rel = f"{folder.name}/{path.name}"
            if path.is_dir():
                report.stray.append(f"{rel}/")
                continue
            try:
                load_image(path)
            except InvalidImageError as exc:
                report.bad_files.append((rel, str(exc).removeprefix(f"{os.fspath(path)}: ")))
            else:
                good += 1
        report.counts[folder.name] = good
        if log:
            log(f"  checked {folder.name}: {good} images")
    return report


def quarantine(report: ValidationReport, dest: Path) -> list[Path]:
    """Move the undecodable files of `report` to `dest/<Class>/<file>` and return their new paths."""
    moved = []
    for rel, _ in report.bad_files:
        target = Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.stem}.{time.time_ns()}{target.suffix}")
        shutil.move(report.root / rel, target)
        moved.append(target)
    return moved


def validate_or_quarantine(
    root: Path,
    classes: Sequence[str] | None = None,
    *,
    quarantine_dir: Path | None = None,
    log: Log | None = None,
) -> ValidationReport:
    """Validate `root`; with `quarantine_dir`, move undecodable files there and validate again."""
    report = validate(root, classes, log=log)
    if report.bad_files and quarantine_dir is not None:
        moved = quarantine(report, quarantine_dir)
        report = validate(root, classes)
        report.quarantined = moved
    return report


def check(
    root: Path,
    classes: Sequence[str] | None = None,
    *,
    quarantine_dir: Path | None = None,
    where: str | None = None,
    log: Log | None = None,
) -> ValidationReport:
    """:func:`validate_or_quarantine`, raising DataError unless the result is usable."""
    report = validate_or_quarantine(root, classes, quarantine_dir=quarantine_dir, log=log)
    if not report.ok:
        raise DataError(report.error_message(where or str(root)))
    return report


# --- sources --------------------------------------------------------------------------------------


def copy_folder(src: Path, dest: Path, *, log: Log = _print) -> None:
    """Copy the class folders of `src` (as they are: validation judges them afterwards)."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(
            f"data folder {src} not found (looked in {src.absolute()}). Set data.folder in params.yaml or "
            "pass --folder PATH, or use --source url (downloads the guide's archive) or --source synthetic."
        )
    log(f"copying {src} ...")
    shutil.copytree(src, dest, dirs_exist_ok=True)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def download(url: str, dest: Path, *, log: Log = _print, timeout: float = DOWNLOAD_TIMEOUT_S) -> int:
    """Stream `url` into the file `dest`, reporting progress; return the number of bytes."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise DataError(f"data.url must be an http(s) URL; got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "orbit-data"})
    received, last_report = 0, 0.0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                now = time.monotonic()
                if now - last_report >= 1.0 or (total and received == total):
                    last_report = now
                    of = f" of {_format_bytes(total)} ({100 * received // total}%)" if total else ""
                    log(f"  downloaded {_format_bytes(received)}{of}")
    except urllib.error.HTTPError as exc:
        raise DataError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}; check data.url") from None
    except urllib.error.URLError as exc:
        raise DataError(
            f"could not reach {url} ({exc.reason}). Without network access use --source folder or "
            "--source synthetic."
        ) from None
    except TimeoutError:
        raise DataError(f"downloading {url} timed out after {timeout:.0f} s; try again") from None
    return received


def find_class_root(names: Iterable[str], classes: Sequence[str] | None = None) -> PurePosixPath:
    """The folder inside an archive whose sub-folders best match `classes` (the shallowest on a tie);
    without `classes`, the one with the most sub-folders of images."""
    names = list(names)
    children: dict[PurePosixPath, set[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if len(parts) >= 2 and parts[0] != "__MACOSX":
            if classes is None and PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            children.setdefault(PurePosixPath(*parts[:-2]), set()).add(parts[-2])
    wanted = set(classes) if classes is not None else None
    scored = [
        (len(found if wanted is None else found & wanted), -len(root.parts), root)
        for root, found in children.items()
    ]
    best = max(scored, default=(0, 0, PurePosixPath()), key=lambda s: (s[0], s[1]))
    if best[0] == 0:
        tops = sorted({PurePosixPath(n).parts[0] for n in names if n.strip("/")})[:10]
        looked_for = (
            "sub-folders of images (<Class>/<image>)"
            if classes is None
            else f"folders named after the classes ({', '.join(classes)})"
        )
        holds = ", ".join(tops) or "nothing"
        raise DataError(f"the archive has no {looked_for}; its top level holds: {holds}")
    return best[2]


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute or non-portable path"
    if ".." in PurePosixPath(name).parts:
        return "path leaves the extraction folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def extract_dataset(
    archive: Path,
    dest: Path,
    classes: Sequence[str] | None = None,
    *,
    log: Log = _print,
    max_bytes: int = MAX_EXTRACTED_BYTES,
) -> PurePosixPath:
    """Unpack the class folders found anywhere in `archive` into `dest`; return where they were found.

    Every member is checked before anything is written: an absolute path, `..`, or a symbolic link
    (zip-slip) rejects the whole archive, as does an unpacked size above `max_bytes` (zip bomb).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        size = archive.stat().st_size
        raise DataError(f"the download is not a zip archive ({size} bytes); check data.url") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        for info in members:
            reason = _unsafe_reason(info)
            if reason:
                raise DataError(f"refusing the archive: member {info.filename!r} is unsafe ({reason})")
        root = find_class_root([i.filename for i in members], classes)
        selected = [i for i in members if PurePosixPath(i.filename).parts[: len(root.parts)] == root.parts]
        size = sum(i.file_size for i in selected)
        if size > max_bytes:
            raise DataError(
                f"refusing the archive: it unpacks to {_format_bytes(size)}, more than the "
                f"limit of {_format_bytes(max_bytes)}"
            )
        skipped = len(members) - len(selected)
        where = f"{root}/" if root.parts else "the top level"
        log(
            f"  unpacking {len(selected)} files from {where}"
            + (f" (skipping {skipped} files outside it)" if skipped else "")
        )
        dest_resolved = Path(dest).resolve()
        for info in selected:
            target = dest_resolved.joinpath(*PurePosixPath(info.filename).parts[len(root.parts) :])
            if not target.resolve().is_relative_to(dest_resolved):  # belt and braces after _unsafe_reason
                raise DataError(f"refusing the archive: member {info.filename!r} leaves the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return root


def fetch_url(url: str, dest: Path, classes: Sequence[str] | None = None, *, log: Log = _print) -> None:
    """Download the zip at `url` next to `dest` and unpack its class folders into `dest`."""
    log(f"downloading {url} ...")
    fd, tmp = tempfile.mkstemp(prefix=".download.", suffix=".zip", dir=Path(dest).parent)
    os.close(fd)
    try:
        download(url, Path(tmp), log=log)
        extract_dataset(Path(tmp), dest, classes, log=log)
    finally:
        os.unlink(tmp)


# --- fetch: build aside, validate, swap -----------------------------------------------------------


def _swap_in(new: Path, target: Path) -> None:
    """Replace `target` by `new` with two renames; on failure `target` is put back."""
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    backup = target.with_name(f".{target.name}.{os.getpid()}-{time.time_ns()}.old")
    os.replace(target, backup)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(backup, target)
        raise
    if backup.is_dir() and not backup.is_symlink():
        shutil.rmtree(backup)
    else:
        backup.unlink()


def fetch(
    source: str,
    out: Path = DEFAULT_OUT,
    *,
    folder: Path | str | None = None,
    url: str | None = None,
    per_class: int = 60,
    size: int = 128,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    quarantine_dir: Path | None = None,
    log: Log = _print,
) -> ValidationReport:
    """Put a validated dataset from `source` at `out`, replacing what is there only on success."""
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; allowed values: {', '.join(SOURCES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        if source == "folder":
            if folder is None:
                raise DataError("--source folder needs a folder (data.folder in params.yaml or --folder)")
            if Path(folder).resolve() == out.resolve():
                raise DataError(f"the source folder {folder} is the output folder; use `validate` on it")
            copy_folder(Path(folder), staging, log=log)
            where = f"the folder {folder}"
        elif source == "url":
            if not url:
                raise DataError("--source url needs a URL (data.url in params.yaml or --url)")
            fetch_url(url, staging, classes, log=log)
            where = f"the archive {url}"
        else:
            from ml.synthetic import BODIES, generate_dataset

            log(f"rendering {per_class} synthetic images per class ({size}x{size}, seed {seed}) ...")
            try:
                bodies = BODIES if classes is None else classes
                generate_dataset(staging, per_class=per_class, size=size, seed=seed, classes=bodies)
            except ValueError as exc:
                raise DataError(f"cannot generate the synthetic set: {exc}") from None
            where = "the synthetic set"
        log("validating ...")
        report = check(staging, classes, quarantine_dir=quarantine_dir, where=where)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.root = out
    return report


# --- command line ---------------------------------------------------------------------------------


def _print_quarantine(report: ValidationReport) -> None:
    if report.quarantined:
        print(f"moved {len(report.quarantined)} undecodable file(s) to quarantine:")
        for path in report.quarantined:
            print(f"  {path}")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ml.params import load_params

    params = load_params(args.params)
    data, classes = params.data, (params.prepare.classes or None)
    source = args.source or data.source
    out = Path(args.out)
    if args.if_missing and out.is_dir() and any(out.iterdir()):
        report = check(out, classes, quarantine_dir=args.quarantine)
        print(f"{out} already holds {report.total} images in {len(report.counts)} classes; kept it")
        return 0
    started = time.monotonic()
    options = dict(
        folder=args.folder or data.folder,
        url=args.url or data.url,
        per_class=data.synthetic_per_class if args.per_class is None else args.per_class,
        size=data.synthetic_size if args.size is None else args.size,
        seed=data.synthetic_seed if args.seed is None else args.seed,
        classes=classes,
        quarantine_dir=args.quarantine,
    )
    # The default source is a folder that exists on some machines only: without an explicit --source, a
    # missing folder falls back to the guide's archive, and a failed download to synthetic renders. A folder
    # that exists but holds bad files is an error to fix, never a reason to fetch something else.
    fallbacks: list[str] = []
    if args.source is None and source == "folder" and not Path(options["folder"]).is_dir():
        print(f"data.folder {options['folder']} does not exist here; trying the guide's archive (data.url)")
        source, fallbacks = "url", ["synthetic"]
    while True:
        try:
            report = fetch(source, out, **options)
            break
        except DataError as exc:
            if not fallbacks:
                raise
            print(f"source '{source}' failed: {exc}\nfalling back to '{fallbacks[0]}'")
            source = fallbacks.pop(0)
    print(report.table())
    _print_quarantine(report)
    print(
        f"{out}: {report.total} images in {len(report.counts)} classes from source '{source}' "
        f"in {time.monotonic() - started:.1f} s. Next: dvc add {out}"
    )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from ml.params import load_params

    root = Path(args.dir)
    classes = (load_params(args.params).prepare.classes or None) if Path(args.params).is_file() else None
    print(f"validating {root} ...")
    report = validate_or_quarantine(root, classes, quarantine_dir=args.quarantine, log=_print)
    print(report.table())
    _print_quarantine(report)
    if not report.ok:
        raise DataError(report.error_message(str(root)))
    print(f"{root}: OK, {report.total} images in {len(report.counts)} classes")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_p = sub.add_parser("fetch", help="get data/raw from a folder, a zip URL or the synthetic generator")
    fetch_p.add_argument("--source", choices=SOURCES, help="default: data.source in params.yaml")
    fetch_p.add_argument("--folder", help="source folder (default: data.folder)")
    fetch_p.add_argument("--url", help="zip archive URL (default: data.url)")
    fetch_p.add_argument("--out", default=str(DEFAULT_OUT), help="where the dataset goes (default: data/raw)")
    fetch_p.add_argument(
        "--per-class",
        type=_positive_int,
        help="synthetic images per class (default: data.synthetic_per_class)",
    )
    fetch_p.add_argument(
        "--size", type=_positive_int, help="synthetic image size (default: data.synthetic_size)"
    )
    fetch_p.add_argument("--seed", type=int, help="synthetic seed (default: data.synthetic_seed)")
    fetch_p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    fetch_p.add_argument("--quarantine", type=Path, help="move undecodable files here instead of failing")
    fetch_p.add_argument("--if-missing", action="store_true", help="keep an existing, valid --out as it is")
    fetch_p.set_defaults(func=_cmd_fetch)
    validate_p = sub.add_parser("validate", help="check that every file decodes and the class folders match")
    validate_p.add_argument(
        "dir", nargs="?", default=str(DEFAULT_OUT), help="dataset folder (default: data/raw)"
    )
    validate_p.add_argument("--quarantine", type=Path, help="move undecodable files here and list them")
    validate_p.add_argument(
        "--params", default="params.yaml", help="where prepare.classes may pin the classes (if it exists)"
    )
    validate_p.set_defaults(func=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ml.params import ParamsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the previous data was left as it was", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
