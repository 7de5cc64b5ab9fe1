#!/usr/bin/env bash
# Rebuild the shipped demo model set, Resources/Models/demo/ (reproducible: fixed seeds, deterministic
# training on CPU). Takes about 25 minutes on a 2-core machine.
#   bash Resources/Models/make_demo_models.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d)}"
bin=.venv/bin/dtisynth
# 8 simulated subjects at the seed paper's geometry (128 x 128 x 76, b=1000, SNR 30, embedded reference eigenvalues)
"$bin" simulate cohort --n 8 --seed 2024 --scheme sampled --snr 30 --out "$work/cohort"
# Six generators, one per Siemens direction: small (ngf 16, 2.6 M parameters) so the set fits in the
# repository in float16; relative intensity (signal / b=0); 4 epochs + 4 of linear decay; 1 validation subject.
"$bin" train --data "$work/cohort" --out Resources/Models/demo --direction all --ngf 16 --ndf 32 \
  --epochs 4 --decay-epochs 4 --intensity relative --validation-fraction 0.125 --seed 0 \
  --amp bf16 --channels-last --weights-dtype float16
rm -rf Resources/Models/demo/checkpoints
