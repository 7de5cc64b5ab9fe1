#!/usr/bin/env bash
# MRtrix3 (dwi2tensor, tensor2metric) from Debian: the independent peer for tensor maps in the tests.
set -euo pipefail
if command -v dwi2tensor >/dev/null; then exit 0; fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mrtrix3 >/dev/null
command -v dwi2tensor
