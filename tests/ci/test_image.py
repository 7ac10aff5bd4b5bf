"""ci.image: which bento, which builder, and nothing rebuilt when the tag is already in the registry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

import pytest

from ci import image
from ci.image import ImageError

REF = "europe-west1-docker.pkg.dev/my-gcp-project/orbit/planet-classifier:3f2c1ab"
BENTOS = [{"tag": "planet_classifier:new"}, {"tag": "planet_classifier:old"}]


class Commands:
    """Records commands; answers `bentoml list`, `manifest inspect` and the rest from a table."""

    def __init__(self, in_registry: bool = False, bentos: list | None = None, fail: str | None = None):
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
            code = 0 if self.in_registry else 1
        elif self.fail and words[1] == self.fail:
            code = 1
        return subprocess.CompletedProcess(cmd, code, out, "")

    def verbs(self) -> list[str]:
        return [" ".join([c[0].rsplit("/", 1)[-1], *c[1:3]]) for c in self.calls]


def only(*names: str):
    return lambda name: f"/usr/bin/{name}" if name in names else None


def test_builds_the_newest_bento_with_docker_and_pushes():
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
    assert run.calls[2][-4:] == ["--backend", "docker", "--image-tag", REF]


def test_falls_back_to_buildah_without_docker():
    run = Commands()
    image.build_and_push(REF, bento="planet_classifier:pinned", run=run, which=only("buildah"))
    assert ["buildah", "push", REF] in run.calls
    assert any(c[1:3] == ["containerize", "planet_classifier:pinned"] for c in run.calls)


def test_existing_tag_is_not_rebuilt():
    run = Commands(in_registry=True)
    assert "already in the registry" in image.build_and_push(REF, run=run, which=only("docker"))
    assert run.verbs() == ["docker manifest inspect"]


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


def stack_file(tmp_path, text: str):
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    return tmp_path


def test_image_name_comes_from_the_stack_file_or_its_default(tmp_path):
    assert image.image_name("dev", stack_file(tmp_path, "config:\n  gcp:project: p\n")) == "planet-classifier"
    named = stack_file(tmp_path, "config:\n  orbit:serviceImageName: team/classifier\n")
    assert image.image_name("dev", named) == "team/classifier"
    unprefixed = stack_file(tmp_path, "config:\n  serviceImageName: other\n")
    assert image.image_name("dev", unprefixed) == "other"


def test_image_name_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ImageError, match=r"Pulumi.prod.yaml not found.*PULUMI_STACK='prod'"):
        image.image_name("prod", tmp_path)
    with pytest.raises(ImageError, match="not an image name"):
        image.image_name("dev", stack_file(tmp_path, "config:\n  orbit:serviceImageName: Bad Name\n"))
    with pytest.raises(ImageError, match="no `config:` mapping"):
        image.image_name("dev", stack_file(tmp_path, "- a list\n"))
    with pytest.raises(ImageError, match="not valid YAML"):
        image.image_name("dev", stack_file(tmp_path, "config: [\n"))


def test_cli_builds_the_reference_from_repository_stack_and_tag(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(stack_file(tmp_path, "config:\n  orbit:serviceImageName: planets\n"))
    built = []
    monkeypatch.setattr(image, "build_and_push", lambda ref, bento, backend: built.append(ref) or "ok")
    repository = "europe-west1-docker.pkg.dev/my-gcp-project/orbit"
    assert image.main(["--repository", repository + "/", "--stack", "dev", "--tag", "3f2c1ab"]) == 0
    assert built == [f"{repository}/planets:3f2c1ab"]
    with pytest.raises(SystemExit):
        image.main(["--repository", repository])  # no --tag
    assert "--repository needs --tag" in capsys.readouterr().err
    assert image.main(["--repository", repository, "--stack", "prod", "--tag", "x"]) == 1
    assert "Pulumi.prod.yaml not found" in capsys.readouterr().err
