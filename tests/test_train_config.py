"""Training YAML configs: strict keys, types, overrides, and the shipped stage / tiny / Accelerate configs."""

import pathlib

import pytest
import yaml
from unimedvl.train.config import ConfigError, TrainConfig, config_from_dict, load_config

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs"


def minimal(**sections) -> dict:
    raw = {"model": {"pretrained_model_name_or_path": "some/model"}, "data": {"datasets": [{"path": "data.jsonl"}]}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def test_unknown_key_names_key_section_and_valid_keys():
    with pytest.raises(ConfigError) as error:
        config_from_dict(minimal(training={"learing_rate": 1e-4}))
    message = str(error.value)
    assert "'learing_rate'" in message and "`config.training`" in message
    assert "Did you mean 'learning_rate'?" in message and "max_grad_norm" in message


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"modell": {}}, "Unknown key 'modell' in `config`"),
        (minimal(data={"datasets": [{"path": "x", "colums": {}}]}),
         "Unknown key 'colums' in `config.data.datasets[0]`"),
        (minimal(lora={"rank": 8}), "Unknown key 'rank' in `config.lora`"),
        (minimal(training={"max_steps": "ten"}), "config.training.max_steps must be an integer"),
        (minimal(training={"gradient_checkpointing": "yes"}), "must be true or false"),
        (minimal(training={"lr_scheduler": "linear"}), "training.lr_scheduler must be one of"),
        (minimal(data={"mixture": {"vqa": 1.0}}), "unknown task(s) ['vqa']"),
        (minimal(data={"datasets": [{"path": "x", "format": "csv"}]}), "format must be one of"),
        ({"data": {"datasets": [{"path": "x"}]}}, "missing required key(s) ['model']"),
        (minimal(model={"config": {}}), "exactly one of `pretrained_model_name_or_path` or `config`"),
    ],
)
def test_invalid_configs_are_named_errors(raw, fragment):
    with pytest.raises(ConfigError) as error:
        config_from_dict(raw)
    assert fragment in str(error.value)


def test_yaml_scientific_notation_and_overrides(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal()) + "training:\n  learning_rate: 1e-4\n")
    config = load_config(path, overrides=["training.max_steps=7", "lora.r=4", "data.mixture={understanding: 1}"])
    assert config.training.learning_rate == 1e-4 and config.training.max_steps == 7
    assert config.lora.r == 4 and config.data.mixture == {"understanding": 1}
    with pytest.raises(ConfigError, match="Unknown key 'max_step'"):
        load_config(path, overrides=["training.max_step=7"])


def test_relative_paths_resolve_next_to_the_yaml(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "d.jsonl").write_text("")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model": {"config": {}, "tokenizer_name_or_path": "tok"},
                                    "data": {"datasets": [{"path": "d.jsonl"}, {"path": "org/hub-dataset"}]}}))
    config = load_config(path)
    assert config.model.tokenizer_name_or_path == str(tmp_path / "tok")
    assert config.data.datasets[0].path == str(tmp_path / "d.jsonl")
    assert config.data.datasets[1].path == "org/hub-dataset"  # not a local path: left for datasets / the Hub


@pytest.mark.parametrize(
    "stage, steps, ratios",
    [(1, 85_000, (75, 25, 0)), (2, 120_000, (40, 45, 10)), (3, 70_000, (37, 35, 25))],
)
def test_stage_configs_follow_the_paper_and_release(stage, steps, ratios):
    config = load_config(CONFIGS / f"stage{stage}.yaml")
    assert isinstance(config, TrainConfig)
    assert config.training.max_steps == steps
    mixture = config.data.mixture
    assert (mixture["understanding"], mixture["generation"], mixture["interleaved"]) == ratios
    training = config.training
    assert (training.learning_rate, training.ema_decay, training.ce_weight, training.mse_weight) == (1e-5, 0.995, 0.25,
                                                                                                     1.0)
    data = config.data
    assert (data.text_cond_dropout, data.vit_cond_dropout, data.vae_cond_dropout) == (0.3, 0.05, 0.05)
    assert training.freeze_vit and not training.freeze_understanding


def test_tiny_config_and_accelerate_configs_parse():
    config = load_config(CONFIGS / "tiny.yaml")
    assert pathlib.Path(config.model.tokenizer_name_or_path).is_dir()
    assert all(pathlib.Path(d.path).is_file() for d in config.data.datasets)
    for name in ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        accelerate_config = yaml.safe_load((CONFIGS / "accelerate" / f"{name}.yaml").read_text())
        assert accelerate_config["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")
    fsdp = yaml.safe_load((CONFIGS / "accelerate" / "fsdp.yaml").read_text())["fsdp_config"]
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")[0] == "UniMedVLMoTDecoderLayer"
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
