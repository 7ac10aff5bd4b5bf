"""ci/image.py names the image CI pushes; infra/config.py names the image the cluster pulls. They must agree.

ci/ reads the stack file through infra/config.py (no Pulumi engine needed): the key and its default live once.
"""

from __future__ import annotations

import pytest
import yaml

from ci import image
from infra.config import REPO_ROOT, parse, read_stack_file
from tests.infra.support import FIXTURES

SECRET = {"orbit:githubAppPrivateKey": "fake"}  # parse() checks presence only


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ci_pushes_the_image_each_committed_stack_deploys(stack):
    """On the repository's own stack files, whatever values the user put in them."""
    deployed = parse(read_stack_file(stack), stack, SECRET).service.image_name
    assert image.image_name(stack, REPO_ROOT) == deployed


@pytest.mark.parametrize(("entry", "expected"), [
    (None, "planet-classifier"),  # key absent: both fall back to their default
    ({"orbit:serviceImageName": "team/classifier"}, "team/classifier"),
    ({"serviceImageName": "other"}, "other"),  # Pulumi also accepts the key without the project prefix
])
def test_both_readers_agree_on_a_stack_file(tmp_path, entry, expected):
    config = {k: v for k, v in read_stack_file("dev", FIXTURES).items() if k != "orbit:serviceImageName"}
    config.update(entry or {})
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    deployed = parse(read_stack_file("dev", tmp_path), "dev", SECRET).service.image_name
    assert image.image_name("dev", tmp_path) == deployed == expected

