#!/usr/bin/env bash
# Rebuild the shipped default model set, Resources/Models/tensor-unet/ (kind tensor-unet).
#   bash Resources/Models/make_tensor_models.sh [WORKDIR] [--resume]
# Training data: 20 noise-free phantom subjects (128 x 128 x 76, 1.72 x 1.72 x 2 mm; seed 7301, disjoint
# from the quality benchmark's subjects) and tensor-mode pairs of four real scans of ../shared/data/real
# (Philips b1000 and b2000, Siemens sagittal b2000, UIH b930). Held out of training: both Siemens
# Prisma XA30 b2500 scans (one subject, PA and AP: the real validation scans of the quality
# benchmark) and phantom subjects sub-019 and sub-020 (the validation loss in the manifest).
# The training prints its time; `--resume` continues from the last epoch's checkpoint.
# Measured: 2131 s (36 min) on a 2-core Intel Xeon 2.8 GHz (AVX-512, no AVX512-BF16), 2026-11-29,
# with tests and an evaluation sharing the machine part of the time (about 37 s an epoch alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d)}"
resume="${2:-}"
bin=.venv/bin/dtisynth
real=../shared/data/real
out=Resources/Models/tensor-unet
if [ ! -d "$work/phantom" ]; then
  "$bin" simulate cohort --n 20 --seed 7301 --scheme sampled --noise-free --out "$work/phantom"
fi
for scan in philips_achieva_b1000:1000 philips_achieva_b2000:2000 siemens_prisma_sag_b2000:2000 uih_umr770_b930:930; do
  name="${scan%%:*}"
  if [ ! -d "$work/real/$name" ]; then
    "$bin" pairs "$real/dev_$name/dev_$name.nii.gz" --mode tensor --b "${scan##*:}" --out "$work/real/$name"
  fi
done
start=$(date +%s)
# One 2.5D U-Net (ngf 32, depth 5: 4.2 M parameters, float16 weights), 96 x 96 crops, batch 8, Adam 1e-3
# for 30 epochs then 15 of linear decay; an epoch draws as many slabs as the training subjects hold.
"$bin" train --kind tensor-unet --data "$work" --out "$out" --ngf 32 --depth 5 --epochs 30 --decay-epochs 15 \
  --lr 1e-3 --batch-size 8 --validation-subjects sub-019,sub-020 --seed 0 --weights-dtype float16 $resume
echo "training took $(( $(date +%s) - start )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores)"
rm -rf "$out/checkpoints"
