"""local.image: the commands and configuration it builds. No image is built here: `make image` does that."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from ci.image import valid_ref
from local import image
from local.image import LocalImageError


class Recorder:
    """Stands in for subprocess.run: records each command and answers with `code`."""

    def __init__(self, code: int = 0, stdout: str = ""):
        self.code, self.stdout, self.calls = code, stdout, []

    def __call__(self, cmd, **kwargs) -> subprocess.CompletedProcess:
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, self.code, self.stdout, "")


def which_without(*absent: str):
    return lambda name: None if name in absent else f"/usr/bin/{name}"


# --- tools -------------------------------------------------------------------------------------------


def test_missing_packages_maps_binaries_to_debian_packages():
    assert image.missing_packages(which_without()) == []
    assert image.missing_packages(which_without("docker-registry", "podman")) == ["podman", "docker-registry"]


def test_off_linux_it_says_it_needs_debian_before_touching_anything():
    image.require_linux("linux")
    with pytest.raises(LocalImageError, match=r"Debian or Ubuntu only .* this is darwin"):
        image.require_linux("darwin")


def test_nothing_is_installed_when_every_tool_is_there():
    run = Recorder()
    image.ensure_tools(which_without(), run, euid=1000)
    assert run.calls == []


def test_a_non_root_user_is_told_the_exact_install_command():
    run = Recorder()
    with pytest.raises(
        LocalImageError, match=r"sudo apt-get install -y --no-install-recommends skopeo debootstrap"
    ):
        image.ensure_tools(which_without("skopeo", "debootstrap"), run, euid=1000)
    assert run.calls == []


def test_root_installs_only_what_is_missing():
    installed: set[str] = set()

    def run(cmd, **kwargs):
        installed.update(cmd[4:])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def which(name):
        return None if name == "runc" and "runc" not in installed else f"/usr/bin/{name}"

    image.ensure_tools(which, run, euid=0)
    assert installed == {"runc"}


def test_a_failed_install_is_reported_with_the_command():
    with pytest.raises(LocalImageError, match=r"apt-get install .*buildah.* failed"):
        image.ensure_tools(which_without("buildah"), Recorder(code=100), euid=0)


# --- configuration -----------------------------------------------------------------------------------


def test_storage_and_engine_settings_are_the_ones_that_work_without_a_daemon(tmp_path):
    storage = tomllib.loads(image.storage_conf(tmp_path))["storage"]
    assert storage["driver"] == "vfs"
    assert Path(storage["graphroot"]) == tmp_path / "containers" / "storage"
    assert Path(storage["runroot"]).is_relative_to(tmp_path)
    conf = tomllib.loads(image.containers_conf())
    assert conf["engine"] == {"runtime": "runc", "cgroup_manager": "cgroupfs", "events_logger": "file"}
    assert conf["containers"]["default_ulimits"] == ["nofile=20000:20000", "nproc=32768:32768"]


def test_paths_with_quotes_survive_the_toml(tmp_path):
    odd = tmp_path / 'a "quoted" \\ dir'
    assert tomllib.loads(image.storage_conf(odd))["storage"]["graphroot"] == str(
        odd / "containers" / "storage"
    )


def test_registries_conf_allows_plain_http_only_to_the_local_registry():
    conf = tomllib.loads(image.registries_conf("127.0.0.1:5000"))
    assert conf["unqualified-search-registries"] == []
    assert conf["registry"] == [{"location": "127.0.0.1:5000", "insecure": True}]


def test_write_config_points_every_tool_at_files_under_the_state_folder(tmp_path):
    env = image.write_config(tmp_path)
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        path = Path(env[key])
        assert path.is_file() and path.parent == tmp_path / "containers", key
    assert env["BUILDAH_ISOLATION"] == "chroot"
    config = yaml.safe_load((tmp_path / "containers" / "registry.yml").read_text())
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "registry")


# --- base image --------------------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
"""


@pytest.mark.parametrize(
    ("sources", "mirror"),
    [
        (DEB822, "http://mirror.example/debian"),
        ("deb [signed-by=/k.gpg] https://m.example/debian/ bookworm main\n", "https://m.example/debian/"),
        ("# deb http://old.example/debian bookworm main\nURIs: http://x.example/debian-security\n", None),
        ("deb https://packages.example/apt cloud-sdk main\n", None),
    ],
)
def test_apt_mirror_takes_the_first_debian_archive(sources, mirror):
    assert image.apt_mirror(sources) == mirror


def test_host_mirror_reads_sources_list_d(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert image.host_mirror(tmp_path) == "http://mirror.example/debian"
    assert image.host_mirror(tmp_path / "missing") is None


def test_debootstrap_installs_python_with_venv_and_no_compiler(tmp_path):
    cmd = image.debootstrap_command(tmp_path / "root", "http://m.example/debian")
    assert cmd[:2] == ["debootstrap", "--variant=minbase"]
    included = set(cmd[2].removeprefix("--include=").split(","))
    # serving/Dockerfile.j2 runs `python3 -m venv`; Debian keeps ensurepip in python3-venv
    assert {"python3", "python3-venv", "ca-certificates"} <= included
    assert not included & {"build-essential", "gcc", "git", "gnupg2"}
    assert cmd[3:] == ["bookworm", str(tmp_path / "root"), "http://m.example/debian"]
    assert image.debootstrap_command(tmp_path, None)[-1] == str(tmp_path)


def test_the_base_image_is_named_after_its_recipe():
    """A base built for another recipe (e.g. without python3-venv) is never picked up as this one."""
    assert image.BASE_IMAGE == image.base_image_ref()
    assert image.BASE_IMAGE.startswith("localhost/orbit-base:bookworm-")
    others = {image.base_image_ref(packages=(*image.BASE_PACKAGES, "git")),
              image.base_image_ref(env=image.IMAGE_ENV[:-1]), image.base_image_ref(slim=())}
    assert image.BASE_IMAGE not in others and len(others) == 3


def test_import_reads_the_tarball_from_stdin_into_the_local_name():
    cmd = image.import_command("localhost/orbit-base:bookworm")
    assert cmd[:2] == ["podman", "import"] and cmd[-2:] == ["-", "localhost/orbit-base:bookworm"]
    assert "ENV=LANG=C.UTF-8" in cmd


def test_prepare_rootfs_drops_apt_caches_docs_and_translations_but_keeps_copyrights(tmp_path):
    rootfs = tmp_path / "rootfs"
    files = {
        "var/cache/apt/archives/git.deb": False,
        "var/cache/apt/pkgcache.bin": False,
        "var/lib/apt/lists/Packages": False,
        "usr/share/man/man1/ls.1.gz": False,
        "usr/share/locale/de/LC_MESSAGES/apt.mo": False,
        "usr/share/doc/apt/changelog.gz": False,
        "usr/share/doc/apt/examples/sources.list": False,
        "usr/share/doc/apt/copyright": True,
        "usr/lib/python3.11/os.py": True,
        "etc/ssl/certs/ca-certificates.crt": True,
    }
    for name in files:
        (rootfs / name).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / name).write_bytes(b"x")
    (rootfs / "var/lib/apt/lists/partial").mkdir()
    image.prepare_rootfs(rootfs, ca_dir=tmp_path / "no-local-cas", bundle=tmp_path / "no-bundle")
    assert {name: (rootfs / name).exists() for name in files} == files
    assert [p.name for p in (rootfs / "var/lib/apt/lists").iterdir()] == ["partial"]
    assert not (rootfs / "usr/local/bin/uv").exists()


def test_local_ca_certificates_of_this_machine_are_trusted_in_the_image(tmp_path):
    rootfs, cas = tmp_path / "rootfs", tmp_path / "cas"
    (rootfs / "etc/ssl/certs").mkdir(parents=True)
    (rootfs / "etc/ssl/certs/ca-certificates.crt").write_text("debian roots")
    cas.mkdir()
    (cas / "proxy.crt").write_text("proxy ca")
    (cas / "notes.txt").write_text("not a certificate")
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("debian roots + proxy ca")
    assert image.trust_host_cas(rootfs, cas, bundle) == ["proxy.crt"]
    assert (rootfs / "usr/local/share/ca-certificates/proxy.crt").read_text() == "proxy ca"
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text() == "debian roots + proxy ca"
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in image.IMAGE_ENV
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in image.IMAGE_ENV  # pip ignores SSL_CERT_FILE


def test_without_local_cas_the_debian_bundle_is_kept(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc/ssl/certs").mkdir(parents=True)
    (rootfs / "etc/ssl/certs/ca-certificates.crt").write_text("debian roots")
    (tmp_path / "bundle.crt").write_text("host bundle")
    assert image.trust_host_cas(rootfs, tmp_path / "none", tmp_path / "bundle.crt") == []
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text() == "debian roots"


def test_an_existing_base_image_is_not_rebuilt():
    run = Recorder(code=0)
    assert "already built" in image.build_base("localhost/orbit-base:bookworm", run=run)
    assert run.calls == [["podman", "image", "exists", "localhost/orbit-base:bookworm"]]


# --- image, container, smoke -------------------------------------------------------------------------


def test_image_ref_is_a_valid_registry_reference_tagged_with_the_bento_version():
    ref = image.image_ref("planet-classifier:vrdsaxxklkw2aax4")
    assert ref == "127.0.0.1:5000/planet-classifier:vrdsaxxklkw2aax4"
    assert valid_ref(ref) == ref
    with pytest.raises(LocalImageError, match="NAME:VERSION"):
        image.image_ref("planet-classifier")


def test_the_container_listens_on_loopback_only():
    cmd = image.run_command("127.0.0.1:5000/p:v", "orbit-image-4321", 4321)
    assert cmd[-6:] == ["127.0.0.1:5000/p:v", "serve", "--host", "127.0.0.1", "--port", "4321"]
    assert cmd[cmd.index("--network") + 1] == "host"


def test_the_container_runs_as_the_pod_does_on_gke():
    cmd = image.run_command("127.0.0.1:5000/p:v", "orbit-image-4321", 4321)
    options = cmd[: cmd.index("127.0.0.1:5000/p:v")]
    assert options[options.index("--user") + 1] == "10001:10001"
    assert "--read-only" in options and options[options.index("--tmpfs") + 1] == "/tmp"
    envs = {options[i + 1] for i, arg in enumerate(options) if arg == "--env"}
    assert envs == {"HOME=/tmp", "BENTOML_HOME=/tmp/bentoml", "ORBIT_WORKERS=cpu_count"}
    assert options[options.index("--cpus") + 1] == "1"  # the stack's default orbit:serviceCpuLimit


@pytest.mark.parametrize("stdout,code,count", [("2\n", 0, 2), ("", 1, None), ("grep: x\n", 0, None)])
def test_workers_are_counted_from_the_container_s_processes(stdout, code, count):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, code, stdout=stdout, stderr="")

    assert image.worker_count("orbit-image-1", run=run) == count
    assert calls[0][:3] == ["podman", "exec", "orbit-image-1"]


def test_smoke_uses_ci_smoke_with_labelled_images(tmp_path):
    cmd = image.smoke_command("http://127.0.0.1:4321", tmp_path, 2)
    assert cmd[1:3] == ["-m", "ci.smoke"]
    assert cmd[cmd.index("--images") + 1] == str(tmp_path) and cmd[cmd.index("--per-class") + 1] == "2"


@pytest.mark.parametrize(("code", "stdout", "size"), [(0, "1834567890\n", 1834567890), (125, "", None)])
def test_image_size(code, stdout, size):
    assert image.image_size("x", Recorder(code, stdout)) == size


def test_size_is_reported_against_the_target():
    assert image.size_line(431_000_000) == "431 MB uncompressed (target <= 500 MB: met)"
    assert image.size_line(1_054_000_000).endswith("(target <= 500 MB: NOT met)")
    assert image.size_line(None) == "unknown"


def test_layers_lists_the_big_ones_base_first_with_the_step_that_made_them():
    history = [  # podman's order: newest first
        {"size": 2_000_000, "CreatedBy": "/bin/sh -c #(nop) COPY dir:abc in ./"},
        {"size": 0, "CreatedBy": "/bin/sh -c #(nop) ENV PATH=/app/.venv/bin"},
        {"size": 300_000_000, "CreatedBy": "/bin/sh -c set -eux;     python3 -m venv /app/.venv"},
        {"size": 130_000_000, "CreatedBy": "/bin/sh -c #(nop) ADD file:123 in /"},
    ]
    run = Recorder(0, json.dumps(history))
    assert image.layers("ref", run) == [
        (130_000_000, "ADD file:123 in /"),
        (300_000_000, "set -eux; python3 -m venv /app/.venv"),
        (2_000_000, "COPY dir:abc in ./"),
    ]
    assert run.calls[0][:2] == ["podman", "history"] and run.calls[0][-1] == "ref"
    assert image.layers("ref", Recorder(125, "")) == []


def test_a_wrong_images_folder_fails_before_anything_is_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(image, "ensure_tools", lambda: pytest.fail("must not get this far"))
    assert image.main(["--images", str(tmp_path / "nope")]) == 1
    assert "is not a folder of <Class>/*.jpg" in capsys.readouterr().err
