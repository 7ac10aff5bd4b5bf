"""ci.image: which bento, which builder, and nothing rebuilt when the tag is already in the registry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from ci import image
from ci.image import ImageError

REF = "europe-west1-docker.pkg.dev/my-gcp-project/orbit/planet-classifier:3f2c1ab"
BENTOS = [{"tag": "planet_classifier:new"}, {"tag": "planet_classifier:old"}]


DIGEST = "sha256:" + "d1" * 32


def descriptor(platform: str = "linux/amd64", digest: str = DIGEST) -> dict:
    os_, arch = platform.split("/")
    return {"Descriptor": {"digest": digest, "platform": {"os": os_, "architecture": arch}}}


class Commands:
    """Records commands; answers `bentoml list`, `manifest inspect` and the rest from a table.

    `in_registry`: what `docker manifest inspect --verbose` prints for the tag (None: not there); a push puts
    a linux/amd64 image there.
    """

    def __init__(self, in_registry=None, bentos: list | None = None, fail: str | None = None):
        self.in_registry = in_registry
        self.bentos = BENTOS if bentos is None else bentos
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str], capture: bool) -> subprocess.CompletedProcess:
        cmd = list(cmd)
        self.calls.append(cmd)
        words = [cmd[0].rsplit("/", 1)[-1], *cmd[1:]]
        code, out = 0, ""
        if words[:2] == ["bentoml", "list"]:
            out = json.dumps(self.bentos)
        elif "inspect" in words:
            code, out = (1, "") if self.in_registry is None else (0, json.dumps(self.in_registry))
        elif self.fail and words[1] == self.fail:
            code = 1
        elif words[1] == "push":
            self.in_registry = descriptor()
        return subprocess.CompletedProcess(cmd, code, out, "")

    def verbs(self) -> list[str]:
        return [" ".join([c[0].rsplit("/", 1)[-1], *c[1:3]]) for c in self.calls]


def only(*names: str):
    return lambda name: f"/usr/bin/{name}" if name in names else None


def test_builds_the_newest_bento_for_amd64_with_docker_pushes_and_reports_the_digest():
    run = Commands()
    assert image.build_and_push(REF, run=run, which=only("docker", "buildah")) == (
        f"pushed {REF} (bento planet_classifier:new)"
    )
    assert run.verbs() == [
        "docker manifest inspect",
        "bentoml list -o",
        "bentoml containerize planet_classifier:new",
        "docker push " + REF,
    ]
    assert image.registry_digest(REF, run=run, which=only("docker")) == DIGEST
    # GKE's nodes are x86: the platform is explicit, whatever machine builds the image.
    assert run.calls[2][-6:] == ["--backend", "docker", "--opt", "platform=linux/amd64", "--image-tag", REF]


def test_falls_back_to_buildah_without_docker():
    run = Commands()
    run.in_registry = None
    which = only("buildah", "skopeo")

    def skopeo_aware(cmd, capture):
        result = run(cmd, capture)
        if "inspect" in cmd and result.returncode == 0:
            result.stdout = json.dumps({"Digest": DIGEST, "Os": "linux", "Architecture": "amd64"})
        return result

    image.build_and_push(REF, bento="planet_classifier:pinned", run=skopeo_aware, which=which)
    assert image.registry_digest(REF, run=skopeo_aware, which=which) == DIGEST
    assert ["buildah", "push", REF] in run.calls
    assert any(c[1:3] == ["containerize", "planet_classifier:pinned"] for c in run.calls)


def test_an_existing_amd64_tag_is_not_rebuilt_and_its_digest_is_reported():
    run = Commands(in_registry=descriptor())
    assert "already in the registry" in image.build_and_push(REF, run=run, which=only("docker"))
    assert run.verbs() == ["docker manifest inspect"]
    assert image.registry_digest(REF, run=run, which=only("docker")) == DIGEST


def test_an_index_deploys_the_digest_of_its_amd64_manifest():
    amd64 = "sha256:" + "a6" * 32
    run = Commands(in_registry=[descriptor("unknown/unknown"), descriptor("linux/amd64", amd64)])
    assert image.registry_digest(REF, run=run, which=only("docker")) == amd64


def test_an_existing_tag_of_another_platform_is_an_error_not_a_release():
    run = Commands(in_registry=descriptor("linux/arm64"))
    with pytest.raises(ImageError, match="built for linux/arm64, not linux/amd64"):
        image.build_and_push(REF, run=run, which=only("docker"))


def test_clear_errors():
    with pytest.raises(ImageError, match="make bento"):
        image.build_and_push(REF, run=Commands(bentos=[]), which=only("docker"))
    with pytest.raises(ImageError, match="no OCI builder found"):
        image.build_and_push(REF, run=Commands(), which=only())
    with pytest.raises(ImageError, match="logged in"):
        image.build_and_push(REF, run=Commands(fail="push"), which=only("docker"))
    with pytest.raises(ImageError, match="REGISTRY/PATH/NAME:TAG"):
        image.build_and_push("planet-classifier", run=Commands(), which=only("docker"))
    with pytest.raises(ImageError, match="REGISTRY/PATH/NAME:TAG"):
        image.valid_ref(REF.replace(":3f2c1ab", ":bad tag"))


def stack_file(tmp_path, text: str | None = None, **config):
    """The example dev stack with `config` on top, or `text` as the whole file."""
    example = yaml.safe_load((Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml").read_text())
    example["config"].update(config)
    (tmp_path / "Pulumi.dev.yaml").write_text(text if text is not None else yaml.safe_dump(example))
    return tmp_path


def test_image_name_comes_from_the_stack_file_or_its_default(tmp_path):
    assert image.image_name("dev", stack_file(tmp_path)) == "planet-classifier"
    named = stack_file(tmp_path, **{"orbit:serviceImageName": "team/classifier"})
    assert image.image_name("dev", named) == "team/classifier"
    unprefixed = stack_file(tmp_path, serviceImageName="other")
    assert image.image_name("dev", unprefixed) == "other"


def test_image_name_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ImageError, match=r"Pulumi.prod.yaml not found.*PULUMI_STACK='prod'"):
        image.image_name("prod", tmp_path)
    with pytest.raises(ImageError, match="orbit:serviceImageName: 'Bad Name' is not an image name"):
        image.image_name("dev", stack_file(tmp_path, **{"orbit:serviceImageName": "Bad Name"}))
    # The whole stack is validated: a build for a stack that cannot deploy stops before it starts.
    with pytest.raises(ImageError, match="fix: pulumi config set orbit:servingMaxNodes"):
        image.image_name("dev", stack_file(tmp_path, **{"orbit:servingMaxNodes": "three"}))
    with pytest.raises(ImageError, match="no `config:` mapping"):
        image.image_name("dev", stack_file(tmp_path, "- a list\n"))
    with pytest.raises(ImageError, match="not valid YAML"):
        image.image_name("dev", stack_file(tmp_path, "config: [\n"))


def test_cli_builds_the_reference_from_repository_stack_and_tag(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(stack_file(tmp_path, **{"orbit:serviceImageName": "planets"}))
    built = []
    monkeypatch.setattr(image, "build_and_push", lambda ref, bento, backend: built.append(ref) or "ok")
    monkeypatch.setattr(image, "registry_digest", lambda ref, backend: DIGEST)
    repository = "europe-west1-docker.pkg.dev/my-gcp-project/orbit"
    assert image.main(["--repository", repository + "/", "--stack", "dev", "--tag", "3f2c1ab"]) == 0
    assert built == [f"{repository}/planets:3f2c1ab"]
    with pytest.raises(SystemExit):
        image.main(["--repository", repository])  # no --tag
    assert "--repository needs --tag" in capsys.readouterr().err
    assert image.main(["--repository", repository, "--stack", "prod", "--tag", "x"]) == 1
    assert "Pulumi.prod.yaml not found" in capsys.readouterr().err


def test_cli_writes_the_digest_for_the_release_job(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(image, "build_and_push", lambda ref, bento, backend: "pushed")
    monkeypatch.setattr(image, "registry_digest", lambda ref, backend: DIGEST)
    out = tmp_path / "github_output"
    assert image.main(["--image", REF, "--github-output", str(out)]) == 0
    assert out.read_text() == f"digest={DIGEST}\n"
    assert DIGEST in capsys.readouterr().out


def test_without_skopeo_a_buildah_build_still_runs_but_no_digest_is_claimed():
    run = Commands()
    assert image.build_and_push(REF, run=run, which=only("buildah")).startswith("pushed")
    with pytest.raises(ImageError, match="not in the registry"):
        image.registry_digest(REF, run=run, which=only("buildah"))
