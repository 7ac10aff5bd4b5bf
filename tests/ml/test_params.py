import pytest

from ml.params import ParamsError, load_params, parse_params
from tests.conftest import REPO_ROOT


def test_repository_params_file_is_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.prepare.preprocess.input_shape[-1] in (1, 3)


@pytest.mark.parametrize(
    "raw,fragments",
    [
        ({"prepare": {"split": 1.5}}, ["prepare.split", "less than 1"]),
        ({"prepare": {"split": 0}}, ["prepare.split", "greater than 0"]),
        ({"train": {"epochs": 0}}, ["train.epochs", "greater than or equal to 1"]),
        ({"prepare": {"color_mode": "hsv"}}, ["prepare.color_mode", "'rgb'", "'grayscale'"]),
        ({"data": {"source": "ftp"}}, ["data.source", "'folder'", "'url'", "'synthetic'"]),
        ({"train": {"conv_filters": []}}, ["train.conv_filters", "non-empty"]),
        ({"train": {"learning_rate": 0.1}}, ["train.learning_rate", "unknown key"]),
        ({"train": {"pooling": "max"}}, ["train.pooling", "'avg'", "'flatten'"]),
        ({"train": {"lr_schedule": "step"}}, ["train.lr_schedule", "'constant'", "'cosine'"]),
        ({"train": {"augment": {"rotation": 2}}}, ["train.augment.rotation", "less than or equal to 1"]),
        (
            {"prepare": {"image_size": 8}, "train": {"conv_filters": [8, 8, 8, 8]}},
            ["train.conv_filters", "prepare.image_size=8", "at most 3 blocks"],
        ),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_values(raw, fragments):
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
