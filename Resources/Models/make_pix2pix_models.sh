#!/usr/bin/env bash
# Rebuild the shipped pix2pix model set, Resources/Models/pix2pix/ (kind pix2pix-per-direction: the seed
# paper's six per-direction U-Nets), on the same anatomy as the previous default tensor-unet set (now tensor-unet-signed), for a fair comparison.
#   bash Resources/Models/make_pix2pix_models.sh [WORKDIR] [--resume]
# Training data, all at b=1000 (a network of signals learns one b):
# - 20 phantom subjects of seed 7301 (the tensor-unet set's anatomy) at SNR 30, as the paper's pairs
#   were acquired: noisy input and noisy targets;
# - tensor-mode pairs at b=1000 of the same four real scans as the tensor-unet set (Philips b1000 and
#   b2000, Siemens sagittal b2000, UIH b930), resampled onto the model grid (1.72 mm).
# Held out: both Siemens Prisma XA30 b2500 scans (the quality benchmark's held-out real scans) and
# phantom subjects sub-019, sub-020 (validation: each direction keeps its best validated epoch).
# Budget: about the tensor-unet set's training time for all six networks together (equal CPU time).
# Measured: 4284 s of training (71 min; the six networks' epochs summed) on a 2-core Intel Xeon 2.8 GHz
# (AVX-512, no AVX512-BF16), 2026-11-29, with tests sharing the machine during the first network
# (about 145 s an epoch alone); the tensor-unet set took 2131 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d)}"
resume="${2:-}"
bin=.venv/bin/dtisynth
real=../shared/data/real
out=Resources/Models/pix2pix
if [ ! -d "$work/phantom" ]; then
  "$bin" simulate cohort --n 20 --seed 7301 --scheme sampled --snr 30 --out "$work/phantom"
fi
for scan in philips_achieva_b1000 philips_achieva_b2000 siemens_prisma_sag_b2000 uih_umr770_b930; do
  if [ ! -d "$work/real/$scan" ]; then
    "$bin" pairs "$real/dev_$scan/dev_$scan.nii.gz" --mode tensor --b 1000 --out "$work/real/$scan"
  fi
done
start=$(date +%s)
# Six generators (ngf 16, depth 7: 2.6 M parameters each, float16 weights) and PatchGAN discriminators
# (ndf 32), relative intensity (signal / b=0, full precision), left-right flips with the mirrored
# direction's targets, batch 8, Adam 4e-4, 2 epochs then 2 of linear decay.
"$bin" train --data "$work" --out "$out" --direction all --ngf 16 --ndf 32 --epochs 2 --decay-epochs 2 \
  --batch-size 8 --lr 4e-4 --intensity relative --validation-subjects sub-019,sub-020 --flip-augment \
  --seed 0 --amp none --weights-dtype float16 $resume
seconds=$(( $(date +%s) - start ))
echo "training took $seconds s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores)"
rm -rf "$out/checkpoints"
# The set's one-line description (dtisynth models, the Slicer list) and its training time.
.venv/bin/python - "$out" "$seconds" <<'PY'
import sys
from DTISynthLib.generators.package import read_manifest, write_manifest
manifest = read_manifest(sys.argv[1])
manifest["description"] = ("The seed paper's method: six pix2pix U-Nets, one per DTI direction (ngf 16, 2.6 M "
                           "parameters each), trained on the tensor-unet set's anatomy at b=1000 (18 phantom "
                           "subjects at SNR 30, 4 real scans), with more CPU time than it. For comparison with "
                           "the paper: behind tensor-unet on the phantom, and on real scans its fibre orientation is "
                           "worse than no off-diagonal terms.")
manifest["training"]["seconds"] = int(sys.argv[2])
write_manifest(sys.argv[1], manifest)
PY
