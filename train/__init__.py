# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Training UniMedVL: `unimedvl train CONFIG.yaml` / `accelerate launch -m unimedvl.train CONFIG.yaml` (see README.md).

Main modules: `config` (YAML sections, strict keys), `schema` (the sample schema, image decoding), `readers` (`datasets`
sources and the UniMed-5M formats), `mixture` (task-ratio sampling, resumable), `packing` (layout, condition dropout,
token-budget packing, latents), `trainer` (the Accelerate loop, checkpoints, EMA, final model), `lora`, `ema`,
`checkpointing`, `sft_trl` (TRL understanding-only SFT), `demo_data` (the offline demo set).
"""
