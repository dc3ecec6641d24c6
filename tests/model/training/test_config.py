from pathlib import Path

import pytest

from model.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "model" / "configs"


def test_the_shipped_recipe_loads_with_its_file_name():
    config = load_config(CONFIGS / "mfn64-distill.toml")
    assert config.name == "mfn64-distill" and config.out_dir == Path("runs/mfn64-distill")
    assert config.network.input_size == 64 and config.data.unlabelled == ("utkface.tar",)


def test_a_config_overrides_its_base_and_keeps_the_rest():
    base = load_config(CONFIGS / "mfn64-distill.toml")
    ablation = load_config(CONFIGS / "mfn64-distill-no-utkface.toml")
    assert ablation.name == "mfn64-distill-no-utkface" and ablation.data.unlabelled == ()
    assert ablation.loss == base.loss and ablation.network == base.network and ablation.steps == base.steps


def test_command_line_overrides_win_and_merge_into_sections(tmp_path):
    config = load_config(CONFIGS / "mfn64-distill.toml", {"steps": 7, "data": {"root": "/data"}})
    assert config.steps == 7 and config.data.root == "/data" and config.data.pairs == "lfw-pairs.txt"


def test_unknown_keys_are_refused(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[loss]\nmargn = 0.2\n")
    with pytest.raises(ValueError, match="margn"):
        load_config(path)


def test_the_112_px_recipe_distils_on_dlibs_chip_from_a_pool_at_the_students_size():
    config = load_config(CONFIGS / "mfn112-online-gpu.toml")
    assert config.teacher == "online" and (config.pipeline.chip, config.pipeline.crop_size) == ("dlib-chip-v1", 112)
    assert config.pool_pipeline == config.pipeline  # data.crop_size = 112: the teacher gets it resized to 150
    assert config.steps == load_config(CONFIGS / "mfn64-gpu.toml").steps
