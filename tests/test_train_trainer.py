"""The trainer on the tiny config with real DICOM-derived data: the loss falls, the final model loads and answers /
generates, resume after SIGKILL is exact, 2-process DDP equals 1 process with accumulation, CLI and error paths."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file
from unimedvl.train.checkpointing import CheckpointError
from unimedvl.train.config import load_config
from unimedvl.train.trainer import UniMedVLTrainer, parameter_group

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "train" / "configs"
TINY = CONFIGS / "tiny.yaml"
DEMO_IMAGES = CONFIGS / "tiny_data" / "images"


def read_metrics(output_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def smoothed(values: list[float], window: int = 30) -> list[float]:
    return [sum(values[i:i + window]) / len(values[i:i + window]) for i in range(0, len(values), window)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config trained for its full 300 steps, in this process."""
    output_dir = tmp_path_factory.mktemp("tiny")
    config = load_config(TINY, [f"training.output_dir={output_dir}"])
    started = time.perf_counter()
    final = UniMedVLTrainer(config).train()
    return {"output_dir": output_dir, "final": final, "seconds": time.perf_counter() - started}


def test_loss_falls_on_real_data(tiny_run):
    metrics = read_metrics(tiny_run["output_dir"])
    assert [m["step"] for m in metrics] == list(range(1, 301))
    loss = smoothed([m["loss"] for m in metrics])
    ce = smoothed([m["loss_ce"] for m in metrics if "loss_ce" in m])
    mse = smoothed([m["loss_mse"] for m in metrics if "loss_mse" in m])
    print(f"\nsmoothed loss {[round(v, 3) for v in loss]}\nCE {[round(v, 3) for v in ce]}\nMSE "
          f"{[round(v, 3) for v in mse]}\ntokens/s {sum(m['tokens_per_second'] for m in metrics) / len(metrics):.0f}, "
          f"wall {tiny_run['seconds']:.1f}s")
    assert loss[-1] < 0.25 * loss[0]
    assert ce[-1] < 0.05 * ce[0]
    assert mse[-1] < 0.8 * mse[0]
    assert all(later <= earlier * 1.1 for earlier, later in zip(loss, loss[1:]))  # no blow-up on the way
    assert all(m["tokens"] <= 512 for m in metrics)  # the hard cap of the tiny config
    assert list((tiny_run["output_dir"] / "logs").rglob("events.out.tfevents.*"))  # tensorboard tracker
    checkpoints = sorted(path.name for path in tiny_run["output_dir"].glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-200", "checkpoint-300"]  # save_steps 100, save_total_limit 2


def test_final_model_loads_answers_and_generates(tiny_run):
    from diffusers import AutoencoderKL
    from unimedvl.pipelines.autoencoder_unimedvl import decode_latents

    from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor

    final = tiny_run["final"]
    model = UniMedVLForConditionalGeneration.from_pretrained(final).eval()
    processor = UniMedVLProcessor.from_pretrained(final)
    assert processor.image_processor.size.longest_edge == 112  # the training image rules travel with the model
    messages = [{"role": "user", "content": [{"type": "image", "image": str(DEMO_IMAGES / "MR_small.dcm")},
                                             {"type": "text", "text": "Which imaging modality was used?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    answer = processor.decode(model.generate(**inputs, max_new_tokens=20, do_sample=False)[0, inputs["input_ids"]
                                                                                             .shape[1]:],
                              skip_special_tokens=True)
    assert answer.startswith("Magnetic resonance imaging")

    # Text-to-image: Euler steps of the flow from noise, then the saved VAE decodes the latent.
    vae = AutoencoderKL.from_pretrained(final / "vae")
    tokenizer, config = processor.tokenizer, model.config
    prompt = tokenizer.encode("An axial CT slice.", add_special_tokens=False)
    grid = 4
    ids = [tokenizer.convert_tokens_to_ids("<|im_start|>"), *prompt, tokenizer.convert_tokens_to_ids("<|im_end|>"),
           config.vision_start_token_id, *[config.latent_token_id] * grid * grid, config.vision_end_token_id]
    input_ids = torch.tensor([ids])
    latent = torch.randn(grid * grid, config.patch_latent_dim, generator=torch.Generator().manual_seed(0))
    times = torch.linspace(1, 0, 9)
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            hidden = model.model(input_ids=input_ids, latents=latent, latent_grid_hw=torch.tensor([[grid, grid]]),
                                 latent_timesteps=t[None]).last_hidden_state
            velocity = model.model.llm2vae(hidden[input_ids == config.latent_token_id])
            latent = latent - velocity * (t - t_next)
        image = decode_latents(vae, latent.reshape(grid, grid, 2, 2, 16).permute(4, 0, 2, 1, 3).reshape(1, 16, 8, 8))
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()


# ---------------------------------------------------------------------------------------------------------------------
# Subprocess runs: resume after SIGKILL, DDP
# ---------------------------------------------------------------------------------------------------------------------

SHORT = ["--set", "training.max_steps=12", "--set", "training.save_steps=4", "--set", "training.report_to=[]",
         "--set", "training.save_total_limit=null"]

# Runs the trainer, optionally pausing (so the test can SIGKILL it) after a given step or inside a checkpoint write,
# after the checkpoint's state files are written but before the folder is published.
PAUSING_RUNNER = textwrap.dedent("""
    import os, pathlib, sys, time
    import unimedvl.train.trainer as trainer

    kind, step = os.environ.get("PAUSE_AT", "none:0").split(":")
    marker = pathlib.Path(os.environ.get("PAUSE_MARKER", "unused"))

    def pause():
        marker.write_text("paused")
        time.sleep(600)

    commit, append_metrics = trainer.commit_checkpoint, trainer.UniMedVLTrainer._append_metrics

    def paused_commit(temporary, final, state):
        if kind == "checkpoint" and state["step"] == int(step):
            pause()
        commit(temporary, final, state)

    def paused_append_metrics(self, record):
        append_metrics(self, record)
        if kind == "step" and record["step"] == int(step):
            pause()

    trainer.commit_checkpoint = paused_commit
    trainer.UniMedVLTrainer._append_metrics = paused_append_metrics
    trainer.main(sys.argv[1:])
""")


def environment() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}


def run_and_kill(script: pathlib.Path, args: list[str], pause_at: str, marker: pathlib.Path):
    marker.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, str(script), *args], env={**environment(), "PAUSE_AT": pause_at,
                                                                          "PAUSE_MARKER": str(marker)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"run ended before pausing at {pause_at}: {process.stderr.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"run did not reach {pause_at}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def run_to_end(script: pathlib.Path, args: list[str]):
    result = subprocess.run([sys.executable, str(script), *args], env=environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_resume_after_sigkill_is_exact(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(PAUSING_RUNNER)
    marker = tmp_path / "paused"
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run_to_end(script, [str(TINY), "--output_dir", str(reference), *SHORT])

    # 1) killed while writing checkpoint-8: its folder stays `.tmp`, checkpoint-4 is intact.
    run_and_kill(script, [str(TINY), "--output_dir", str(killed), *SHORT], "checkpoint:8", marker)
    assert (killed / "checkpoint-4" / "trainer_state.json").is_file()
    assert (killed / "checkpoint-8.tmp").is_dir() and not (killed / "checkpoint-8").exists()
    # 2) resumed from checkpoint-4, killed again mid-training after step 6.
    resume = [str(TINY), "--output_dir", str(killed), *SHORT, "--resume_from_checkpoint", "latest"]
    run_and_kill(script, resume, "step:6", marker)
    # 3) resumed from checkpoint-4 again, to the end.
    run_to_end(script, resume)

    expected, got = read_metrics(reference), read_metrics(killed)
    assert [m["step"] for m in got] == list(range(1, 13))
    for key in ("loss", "loss_ce", "loss_mse", "grad_norm", "lr", "tokens"):
        assert [m.get(key) for m in got] == pytest.approx([m.get(key) for m in expected], rel=1e-6, abs=1e-7), key
    for name in ("final/model.safetensors", "checkpoint-12/ema-rank0.safetensors"):
        reference_weights, resumed_weights = load_file(reference / name), load_file(killed / name)
        for key, tensor in reference_weights.items():
            torch.testing.assert_close(resumed_weights[key], tensor, atol=1e-6, rtol=0)
    assert not list(killed.glob("*.tmp"))  # the stale temporary folder was cleaned up


RANK_DUMP_RUNNER = textwrap.dedent("""
    import sys, torch
    from unimedvl.train.config import load_config
    from unimedvl.train.trainer import UniMedVLTrainer

    trainer = UniMedVLTrainer(load_config(sys.argv[1], sys.argv[2:]))
    trainer.train()
    state = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    torch.save({k: v.detach().clone() for k, v in state.items()},
               f"{trainer.output_dir}/weights-rank{trainer.accelerator.process_index}.pt")
""")


@pytest.mark.slow  # three training processes (two at once): ~30 s on an idle 2-core machine, minutes on a busy one
def test_two_process_ddp_matches_one_process_with_accumulation(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RANK_DUMP_RUNNER)
    overrides = ["training.max_steps=4", "training.save_steps=4", "training.report_to=[]"]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "accelerate" /
                                                                                         "ddp.yaml"),
              "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29561", str(script)]
    result = subprocess.run([*launch, str(TINY), f"training.output_dir={ddp}", *overrides], env=environment(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(script), str(TINY), f"training.output_dir={single}", *overrides,
                             "training.gradient_accumulation_steps=2"], env=environment(), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = torch.load(ddp / "weights-rank0.pt"), torch.load(ddp / "weights-rank1.pt")
    for key, tensor in rank0.items():
        assert torch.equal(tensor, rank1[key]), key  # DDP keeps every replica identical
    single_weights = torch.load(single / "weights-rank0.pt")
    for key, tensor in rank0.items():
        torch.testing.assert_close(tensor, single_weights[key], atol=1e-5, rtol=0)
    ddp_metrics, single_metrics = read_metrics(ddp), read_metrics(single)
    assert [m["tokens"] for m in ddp_metrics] == [m["tokens"] for m in single_metrics]  # the same global batches
    assert [m["loss"] for m in ddp_metrics] == pytest.approx([m["loss"] for m in single_metrics], rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Command line and bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_unimedvl_train_command(tmp_path, capsys):
    from unimedvl.cli import main

    output_dir = tmp_path / "cli"
    status = main(["train", str(TINY), "--output-dir", str(output_dir), "--set", "training.max_steps=2", "--set",
                   "training.report_to=[]"])
    assert status == 0 and (output_dir / "final" / "config.json").is_file()
    assert len(read_metrics(output_dir)) == 2

    typo = tmp_path / "typo.yaml"
    typo.write_text(TINY.read_text().replace("warmup_steps:", "warmup_step:"))
    assert main(["train", str(typo)]) == 2
    assert "Unknown key 'warmup_step' in `config.training`. Did you mean 'warmup_steps'?" in capsys.readouterr().err


def test_resume_without_a_valid_checkpoint_is_an_error(tmp_path):
    (tmp_path / "checkpoint-4.tmp").mkdir()
    config = load_config(TINY, [f"training.output_dir={tmp_path}", "training.resume_from_checkpoint=latest"])
    with pytest.raises(CheckpointError, match=r"no complete checkpoint \(only incomplete: \['checkpoint-4.tmp'\]\)"):
        UniMedVLTrainer(config)
    config.training.resume_from_checkpoint = str(tmp_path / "checkpoint-4.tmp")
    with pytest.raises(CheckpointError, match="is not a complete checkpoint"):
        UniMedVLTrainer(config)


# ---------------------------------------------------------------------------------------------------------------------
# Freezing, gradient checkpointing, EMA
# ---------------------------------------------------------------------------------------------------------------------


def test_parameter_groups_and_freezing(tmp_path):
    config = load_config(TINY, [f"training.output_dir={tmp_path}", "training.freeze_understanding=true",
                                "training.freeze_vit=true", "training.report_to=[]"])
    trainer = UniMedVLTrainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert parameter_group("model.language_model.layers.0.self_attn.q_proj_moe_gen.weight") == "generation"
    assert parameter_group("model.language_model.layers.0.mlp.up_proj.weight") == "understanding"
    assert parameter_group("model.vision_model.encoder.layers.0.mlp.fc1.weight") == "vit"
    assert parameter_group("model.llm2vae.weight") == "generation" and parameter_group("lm_head.weight") == \
        "understanding"
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(parameter_group(name) == "generation" for name in trainable)
    assert trainer.trainable["understanding"] == 0 and trainer.trainable["vit"] == 0
    # The generation expert started as a copy of the understanding expert (tiny config).
    layer = model.model.language_model.layers[0]
    assert torch.equal(layer.mlp.up_proj.weight, layer.mlp_moe_gen.up_proj.weight)


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    from unimedvl.train.packing import collate_packed

    config = load_config(TINY, [f"training.output_dir={tmp_path}", "training.report_to=[]"])
    trainer = UniMedVLTrainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    batch = collate_packed(trainer.packers[0].next_row())
    batch.pop("vae_images")
    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "labels", "sample_ids", "pixel_values",
                                    "image_grid_hw")}
    inputs["latent_grid_hw"] = batch["latent_grid_hw"]
    if batch["latent_grid_hw"] is not None:
        inputs["latents"] = torch.randn(int(batch["latent_grid_hw"].prod(-1).sum()), 64)
        inputs["latent_timesteps"] = batch["latent_timesteps"]
        inputs["latent_loss_mask"] = batch["latent_loss_mask"]
        inputs["latent_noise"] = torch.randn(batch["num_mse_tokens"], 64)
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        if enabled:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(**inputs, logits_to_keep=1, use_cache=False).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4)


def test_ema_update_and_swap():
    from unimedvl.train.ema import ExponentialMovingAverage

    layer = torch.nn.Linear(2, 2)
    ema = ExponentialMovingAverage(layer, decay=0.9)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], start + 0.1)
    with ema.swapped_in():
        torch.testing.assert_close(layer.weight.detach(), start + 0.1)
    torch.testing.assert_close(layer.weight.detach(), start + 1.0)
