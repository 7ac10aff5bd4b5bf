"""The bento as a real OCI image on a machine without a Docker engine: build, push, run, smoke-test, stop.

    python -m local.image [--images DIR] [--per-class N] [--rebuild-base]

1. installs buildah, podman, skopeo, docker-registry, runc and debootstrap (Debian packages) when missing;
2. writes the container tools' configuration under .orbit/containers/ (vfs storage, runc, cgroupfs: what
   works without a daemon or systemd) and points them at it through CONTAINERS_* variables, never /etc;
3. builds the base image `localhost/orbit-base:bookworm-<digest of its recipe>` with debootstrap once (Docker
   Hub is unreachable);
4. builds the bento on that base and containerizes and pushes it with `ci.image`, the code CI uses, to a
   registry on 127.0.0.1:5000 (storage under .orbit/registry) that lives only for this command;
5. runs the image with podman on a free loopback port and smoke-tests it with `ci.smoke` on real images;
6. stops the container and the registry, whatever happened, and prints a summary.

Lives in local/ and not in serving/: everything under serving/ is copied into the bento, and this is a
build-machine tool.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import yaml

from ci import image as ci_image
from infra.config import KEYS, SERVICE_WORKERS, SERVING_UID, cpu_millis
from local.net import free_port

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".orbit"
REGISTRY_ADDR = "127.0.0.1:5000"
SUITE = "bookworm"
#: binary -> Debian package.
TOOLS = {
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
    "docker-registry": "docker-registry",
    "runc": "runc",
    "debootstrap": "debootstrap",
}
#: python3 and python3-venv: serving/Dockerfile.j2 makes the service's venv with `python3 -m venv` (Debian
#: keeps ensurepip in python3-venv); nothing else, no compiler: every serving package installs from a wheel.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: SSL_CERT_FILE and PIP_CERT make Python and pip trust the system bundle (pip's default is its own roots), so
#: that a CA added below for a TLS-intercepting proxy also works for `pip install` inside the build.
IMAGE_ENV = (
    "LANG=C.UTF-8",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
)
#: What debootstrap leaves that a container never reads: apt's downloads and lists, documentation and
#: translations (about 90 + 50 MB). Copyright files stay.
SLIM_GLOBS = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/doc/*/*",
)


def base_image_ref(packages: Sequence[str] = BASE_PACKAGES, env: Sequence[str] = IMAGE_ENV,
                   slim: Sequence[str] = SLIM_GLOBS) -> str:
    """The base's name carries a digest of its recipe, so that a checkout with another recipe builds its own
    base instead of reusing one made for another Dockerfile (an older base lacks python3-venv)."""
    recipe = json.dumps([SUITE, list(packages), list(env), list(slim)])
    return f"localhost/orbit-base:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"


BASE_IMAGE = base_image_ref()
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_IMAGES = (ROOT / "data" / "raw", ROOT.parent / "shared" / "data" / "planets" / "raw")
ULIMITS = ("nofile=20000:20000", "nproc=32768:32768")
#: The pod's CPU limit as a stack sets it by default: the container's CPU quota, from which BentoML's
#: cpu_count (the pod's ORBIT_WORKERS) makes one worker per whole CPU.
POD_CPUS = cpu_millis(KEYS["orbit:serviceCpuLimit"].default) / 1000
#: Issue 9: the whole image, uncompressed. Reported, not enforced: the base image decides much of it.
SIZE_TARGET_MB = 500

Runner = Callable[..., subprocess.CompletedProcess]


class LocalImageError(RuntimeError):
    """A step failed; the message says which and what to do."""


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), text=True, check=False, **kwargs)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


# --- tools -------------------------------------------------------------------------------------------


def missing_packages(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    return [package for binary, package in TOOLS.items() if not which(binary)]


def install_command(packages: Sequence[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def require_linux(system: str = sys.platform) -> None:
    """Say up front that this needs Debian's tools, rather than fail on a missing apt-get on a Mac."""
    if system != "linux":
        raise LocalImageError(
            f"`make image` runs on Debian or Ubuntu only (apt, debootstrap, buildah and podman, as root); "
            f"this is {system}. The deploy workflow builds the image on Linux; on a Mac, use a Linux VM."
        )


def ensure_tools(which=shutil.which, run: Runner = _run, euid: int | None = None) -> None:
    missing = missing_packages(which)
    if not missing:
        return
    command = " ".join(install_command(missing))
    if (os.geteuid() if euid is None else euid) != 0:
        raise LocalImageError(f"missing {', '.join(missing)}: install them as root with `sudo {command}`")
    _step(f"installing {', '.join(missing)} (about 160 MB, once)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run(install_command(missing), env=env).returncode != 0:
        raise LocalImageError(f"`{command}` failed (output above); try `apt-get update` first")
    still = missing_packages(which)
    if still:
        raise LocalImageError(f"{', '.join(still)} still missing after `{command}`")


# --- configuration -----------------------------------------------------------------------------------


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def storage_conf(state: Path) -> str:
    """vfs: slow and space-hungry, but needs neither overlay mounts nor fuse, which this machine lacks."""
    return (
        "[storage]\n"
        'driver = "vfs"\n'
        f"graphroot = {_toml_str(state / 'containers' / 'storage')}\n"
        f"runroot = {_toml_str(state / 'containers' / 'run')}\n"
    )


def containers_conf() -> str:
    """runc (crun fails on hybrid cgroups), cgroupfs and a file logger (no systemd, no journald)."""
    ulimits = ", ".join(_toml_str(u) for u in ULIMITS)
    return (
        "[containers]\n"
        f"default_ulimits = [{ulimits}]\n"
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def registries_conf(registry: str = REGISTRY_ADDR) -> str:
    """No short-name search (nothing reachable to search) and plain HTTP for the loopback registry."""
    return (
        "unqualified-search-registries = []\n"
        "\n[[registry]]\n"
        f"location = {_toml_str(registry)}\n"
        "insecure = true\n"
    )


def registry_config(storage: Path, registry: str = REGISTRY_ADDR) -> dict:
    """docker-registry's config: filesystem storage, loopback only, deletes allowed for cleaning up."""
    return {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": registry},
    }


def write_config(state: Path, registry: str = REGISTRY_ADDR) -> dict[str, str]:
    """Write the files under state/containers and return the environment that selects them."""
    conf = state / "containers"
    conf.mkdir(parents=True, exist_ok=True)
    files = {
        "storage.conf": storage_conf(state),
        "containers.conf": containers_conf(),
        "registries.conf": registries_conf(registry),
        "registry.yml": yaml.safe_dump(registry_config(state / "registry", registry), sort_keys=False),
    }
    for name, text in files.items():
        (conf / name).write_text(text)
    return {
        "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
        "CONTAINERS_CONF": str(conf / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
        # chroot isolation: RUN steps share the host's network, no CNI bridge or netns needed to build
        "BUILDAH_ISOLATION": "chroot",
    }


# --- base image --------------------------------------------------------------------------------------


def apt_mirror(sources: str) -> str | None:
    """The first Debian mirror of an apt sources file (deb822 or one-line); None: debootstrap's default."""
    for line in sources.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^URIs:\s*(\S+)", line) or re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
        if match and match.group(1).rstrip("/").endswith("/debian"):
            return match.group(1)
    return None


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str | None:
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    for path in files:
        if path.is_file() and (mirror := apt_mirror(path.read_text(errors="replace"))):
            return mirror
    return None


def debootstrap_command(rootfs: Path, mirror: str | None) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(rootfs),
        *([mirror] if mirror else []),
    ]


def import_command(ref: str = BASE_IMAGE) -> list[str]:
    changes = [f"ENV={e}" for e in IMAGE_ENV] + ['CMD=["/bin/bash"]']
    return ["podman", "import", *[a for c in changes for a in ("--change", c)], "-", ref]


def trust_host_cas(rootfs: Path, ca_dir: Path = HOST_CA_DIR, bundle: Path = HOST_CA_BUNDLE) -> list[str]:
    """Give the image the CA certificates this machine added locally (a proxy that intercepts TLS to the
    package index, for one): the Dockerfile's `pip install` fails with a certificate error otherwise."""
    extra = sorted(ca_dir.glob("*.crt")) if ca_dir.is_dir() else []
    if not extra:
        return []
    target = rootfs / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for cert in extra:
        shutil.copy2(cert, target / cert.name)
    if bundle.is_file():  # the host's bundle: Debian's roots plus these, as update-ca-certificates made it
        shutil.copy2(bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
    return [cert.name for cert in extra]


def prepare_rootfs(rootfs: Path, ca_dir: Path = HOST_CA_DIR, bundle: Path = HOST_CA_BUNDLE) -> None:
    """Slim the debootstrapped tree and trust this machine's CAs."""
    if added := trust_host_cas(rootfs, ca_dir, bundle):
        print(f"trusting this machine's local CA certificates in the base image: {', '.join(added)}")
    for pattern in SLIM_GLOBS:
        for path in rootfs.glob(pattern):
            if path.name == "copyright" or path.name == "partial":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def image_exists(ref: str, run: Runner = _run) -> bool:
    return run(["podman", "image", "exists", ref]).returncode == 0


def build_base(ref: str = BASE_IMAGE, rebuild: bool = False, run: Runner = _run) -> str:
    if not rebuild and image_exists(ref, run):
        return f"{ref} already built (--rebuild-base to redo it)"
    mirror = host_mirror()
    _step(f"debootstrap {SUITE} (minbase + {', '.join(BASE_PACKAGES)}) from {mirror or 'the default mirror'}")
    with tempfile.TemporaryDirectory(prefix="orbit-rootfs-", dir=STATE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        if run(debootstrap_command(rootfs, mirror), stdout=subprocess.DEVNULL).returncode != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-800:] if log.is_file() else ""
            raise LocalImageError(f"debootstrap failed; is the Debian mirror reachable?\n{tail}")
        prepare_rootfs(rootfs)
        _step(f"committing {ref}")
        tar = subprocess.Popen(
            [
                "tar",
                "-C",
                str(rootfs),
                "--numeric-owner",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./dev/*",
                "-c",
                ".",
            ],
            stdout=subprocess.PIPE,
        )
        result = run(import_command(ref), stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait() != 0 or result.returncode != 0:
            raise LocalImageError(f"could not commit {ref} (`podman import` output above)")
    return f"built {ref}"


# --- registry and container --------------------------------------------------------------------------


def _port_open(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


@contextlib.contextmanager
def registry(config: Path, logs: Path, address: str = REGISTRY_ADDR, timeout: float = 20) -> Iterator[str]:
    """Run docker-registry for the duration of the block."""
    if _port_open(address):
        raise LocalImageError(
            f"{address} is already in use: stop what listens there (`ss -ltnp` shows it), then run this again"
        )
    logs.parent.mkdir(parents=True, exist_ok=True)
    with logs.open("w") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise LocalImageError(f"the registry did not start; see {logs}")
            time.sleep(0.3)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_command(ref: str, name: str, port: int) -> list[str]:
    """Host network with BentoML bound to loopback: nothing listens beyond 127.0.0.1, no iptables rules.

    The rest is how GKE runs the pod (infra/components/service.py): as SERVING_UID, not the image's user, on a
    read-only root file system with a writable /tmp, HOME and BENTOML_HOME under it, with the pod's CPU
    limit and ORBIT_WORKERS. An image that needs to write elsewhere, or files only its own user may read,
    or that starts another number of workers than the limit allows, fails here and not after a deploy."""
    return [
        "podman",
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--user",
        f"{SERVING_UID}:{SERVING_UID}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--env",
        "HOME=/tmp",
        "--env",
        "BENTOML_HOME=/tmp/bentoml",
        "--cpus",
        f"{POD_CPUS:g}",
        "--env",
        f"ORBIT_WORKERS={SERVICE_WORKERS}",
        ref,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextlib.contextmanager
def container(ref: str, port: int, run: Runner = _run) -> Iterator[str]:
    name = f"orbit-image-{port}"
    started = run(run_command(ref, name, port), capture_output=True)
    if started.returncode != 0:
        raise LocalImageError(f"`podman run {ref}` failed: {started.stderr.strip()[-800:]}")
    try:
        yield name
    finally:
        run(["podman", "rm", "--force", "--time", "10", name], capture_output=True)


def image_size(ref: str, run: Runner = _run) -> int | None:
    result = run(["podman", "image", "inspect", "--format", "{{.Size}}", ref], capture_output=True)
    return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip().isdigit() else None


def size_line(size: int | None, target_mb: int = SIZE_TARGET_MB) -> str:
    if size is None:
        return "unknown"
    verdict = "met" if size <= target_mb * 1e6 else "NOT met"
    return f"{size / 1e6:.0f} MB uncompressed (target <= {target_mb} MB: {verdict})"


def layers(ref: str, run: Runner = _run, smallest_mb: float = 1.0) -> list[tuple[int, str]]:
    """The image's layers of at least `smallest_mb`, base first: (bytes, the step that made it)."""
    result = run(["podman", "history", "--no-trunc", "--format", "json", ref], capture_output=True)
    try:
        history = json.loads(result.stdout) if result.returncode == 0 else []
    except json.JSONDecodeError:
        return []
    found = []
    for layer in reversed(history):  # podman lists the newest layer first
        size = layer.get("size") or 0
        if size >= smallest_mb * 1e6:
            step = " ".join(str(layer.get("CreatedBy", "")).split())
            found.append((size, re.sub(r"^/bin/sh -c (#\(nop\) )?", "", step)))
    return found


#: The service's venv in the image (serving/Dockerfile.j2).
SITE_PACKAGES = "/app/.venv/lib/python3*/site-packages"


def packages(ref: str, top: int = 8, run: Runner = _run) -> list[tuple[int, str]]:
    """The biggest entries of the image's site-packages, (MB, name), read with du in a throw-away container:
    which serving dependency costs what (buildah writes all the Dockerfile's steps as one layer)."""
    script = f"du -sm {SITE_PACKAGES}/* | sort -rn | head -n {int(top)}"
    result = run(["podman", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", ref, "-c", script],
                 capture_output=True)
    found = []
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        size, _, path = line.partition("\t")
        if size.strip().isdigit():
            found.append((int(size), path.rsplit("/", 1)[-1]))
    return found


def worker_count(name: str, run: Runner = _run) -> int | None:
    """Server processes in the running container (BentoML gives each a --worker-id), or None if unreadable.
    The pattern's brackets keep grep and the shell from counting their own command lines."""
    script = "grep -las -e 'worker[-]id' /proc/[0-9]*/cmdline | wc -l"
    result = run(["podman", "exec", name, "/bin/sh", "-c", script], capture_output=True)
    text = result.stdout.strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None


def smoke_command(url: str, images: Path, per_class: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ci.smoke",
        "--url",
        url,
        "--images",
        str(images),
        "--per-class",
        str(per_class),
        "--timeout",
        "180",
    ]


# --- the whole flow ----------------------------------------------------------------------------------


def default_images() -> Path:
    for path in DEFAULT_IMAGES:
        if path.is_dir():
            return path
    raise LocalImageError("no real images: run `make data` (data/raw) or pass --images DIR of <Class>/*.jpg")


def bento_for(base: str) -> str:
    from serving import build as bento_build
    from serving import package

    if package.main(["--if-needed"]) != 0:
        raise LocalImageError("packaging the model failed (above); train it first with `make repro`")
    try:
        tag, dockerfile = bento_build.build(base)
    except bento_build.BuildError as exc:
        raise LocalImageError(str(exc)) from None
    print(f"bento:      {tag}\ndockerfile: {dockerfile}")
    return tag


def image_ref(bento: str, registry: str = REGISTRY_ADDR) -> str:
    """The registry reference of a bento's image, tagged with the bento version as CI tags with the commit."""
    name, _, version = bento.partition(":")
    if not version:
        raise LocalImageError(f"{bento!r} is not a bento tag NAME:VERSION")
    name = KEYS["orbit:serviceImageName"].default  # the name a stack deploys unless it sets another
    return ci_image.valid_ref(f"{registry}/{name}:{version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="folder of <Class>/*.jpg to smoke-test with")
    parser.add_argument("--per-class", type=int, default=1, help="images per class sent (default 1)")
    parser.add_argument("--rebuild-base", action="store_true", help=f"debootstrap {BASE_IMAGE} again")
    args = parser.parse_args(argv)
    began = time.monotonic()
    summary: dict[str, str] = {}
    try:
        images = args.images or default_images()
        if not images.is_dir():
            raise LocalImageError(f"--images {images} is not a folder of <Class>/*.jpg")
        if args.per_class < 1:
            raise LocalImageError("--per-class must be at least 1")
        require_linux()
        _step("checking the container tools")
        ensure_tools()
        os.environ.update(write_config(STATE))
        os.environ.setdefault("BENTOML_HOME", str(STATE / "bentoml"))
        _step(f"base image {BASE_IMAGE}")
        print(build_base(BASE_IMAGE, args.rebuild_base), flush=True)
        _step("building the bento on that base")
        bento = bento_for(BASE_IMAGE)
        ref = image_ref(bento)
        with registry(STATE / "containers" / "registry.yml", STATE / "logs" / "registry.log"):
            _step(f"containerizing and pushing {ref} (first time: several minutes)")
            summary["push"] = ci_image.build_and_push(ref, bento, "buildah")
            # a rebuilt base or a retagged image leaves its predecessor untagged: vfs keeps full copies
            _run(["podman", "image", "prune", "--force"], capture_output=True)
            summary["size"] = size_line(image_size(ref))
            print("layers of 1 MB or more, base first:")
            for size, step in layers(ref):
                print(f"  {size / 1e6:7.0f} MB  {step[:100]}")
            print("biggest Python packages:", ", ".join(f"{name} {mb} MB" for mb, name in packages(ref)))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            _step(f"running {ref} on {url}")
            with container(ref, port) as name:
                smoke = _run(smoke_command(url, images, args.per_class))
                if smoke.returncode != 0:
                    logs = _run(["podman", "logs", "--tail", "30", name], capture_output=True)
                    print(logs.stdout + logs.stderr, file=sys.stderr)
                summary["smoke"] = "PASS" if smoke.returncode == 0 else "FAIL"
                expected, found = max(1, int(POD_CPUS)), worker_count(name)
                summary["workers"] = (
                    f"{'PASS' if found == expected else 'FAIL'}: {found} with --cpus {POD_CPUS:g} and "
                    f"ORBIT_WORKERS={SERVICE_WORKERS}, as in the pod (expected {expected})"
                )
            summary["image"] = ref
    except (LocalImageError, ci_image.ImageError) as exc:
        print(f"image: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if summary:
            print(f"\nsummary ({time.monotonic() - began:.0f} s; container and registry stopped)")
            for key, value in summary.items():
                print(f"  {key:6} {value}")
    passed = summary.get("smoke") == "PASS" and summary.get("workers", "").startswith("PASS")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
