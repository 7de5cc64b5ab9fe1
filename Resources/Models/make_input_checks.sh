#!/usr/bin/env bash
# Fit the out-of-distribution input check (DTISynthLib/realism/input_check.py) of the shipped sets,
# Resources/Models/tensor-unet-signed (the previous default) and Resources/Models/pix2pix, from their training
# inputs (the default tensor-unet set fits its own in make_tensor_models.sh):
#   bash Resources/Models/make_input_checks.sh [WORKDIR]
# Data: the 20 phantom subjects of seed 7301 (both sets' anatomy; at SNR 30, as the pix2pix set saw
# them and within the tensor-unet set's noise augmentation) and tensor-mode pairs of the four real
# training scans. Each set's manifest says which subjects trained it and which validated it
# (sub-019, sub-020); the check follows that split. `dtisynth train` fits the check of a new package
# itself; this script is for the sets trained before the check existed.
# Measured: 2026-11-29, 2-core Intel Xeon 2.8 GHz (AVX-512, no AVX512-BF16): the cohort about 8 min,
# each check 89-92 s (refitted the same day over axial slices, core.model_grid.axial_slices: 111-132 s
# with another job sharing the CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d)}"
bin=.venv/bin/dtisynth
real=../shared/data/real
if [ ! -d "$work/phantom" ]; then
  "$bin" simulate cohort --n 20 --seed 7301 --scheme sampled --snr 30 --out "$work/phantom"
fi
for scan in philips_achieva_b1000:1000 philips_achieva_b2000:2000 siemens_prisma_sag_b2000:2000 uih_umr770_b930:930; do
  name="${scan%%:*}"
  if [ ! -d "$work/real/$name" ]; then
    "$bin" pairs "$real/dev_$name/dev_$name.nii.gz" --mode tensor --b "${scan##*:}" --out "$work/real/$name"
  fi
done
for set in tensor-unet-signed pix2pix; do
  start=$(date +%s)
  "$bin" models --fit-input-check "Resources/Models/$set" --data "$work"
  echo "$set: input check in $(( $(date +%s) - start )) s"
done
