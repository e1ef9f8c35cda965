# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""`python -m unimedvl.train CONFIG.yaml` (and `accelerate launch -m unimedvl.train CONFIG.yaml`)."""

from .trainer import main

main()
