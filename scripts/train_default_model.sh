#!/usr/bin/env bash
# How the shipped models/isr_small_synth.pt was made (see models/MODEL_CARD.md).
#   scripts/train_default_model.sh OUT_DIR [PYTHON] [INIT_CHECKPOINT]
# 1. trains on the CPU (2 torch threads, one frame-rendering worker) for MINUTES (default 45)
#    wall time on the 'common' situation mix, warm-started from INIT_CHECKPOINT (default: the
#    checkpoint shipped before, kept as the file given);
# 2. evaluates it on held-out drives: common situations only (the targets), the long-tailed
#    default mix (oracle enrichment, errors per tag), and each rare tag forced (the gap).
# DEVICE=cuda trains on a GPU instead (the schedule still spans MINUTES of wall time).
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [PYTHON] [INIT_CHECKPOINT]}
py=${2:-python3}
init=${3:-models/isr_small_synth.pt}
minutes=${MINUTES:-45}
device=${DEVICE:-cpu}
mkdir -p "$out"
cli="$py -m importance_sampler_ros.cli"
$py -c 'import torch, torchvision, numpy; print("torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available())'
cp "$init" "$out/init.pt"

$cli train --out "$out/isr_new.pt" --minutes "$minutes" --seed 0 --device "$device" \
  --threads 2 --workers 1 --init-from "$out/init.pt" --lr 5e-4 --warmup 30 --mix common \
  --log-every 10 > "$out/train.log" 2>&1
tail -3 "$out/train.log"

# held-out common drives: near mAP, per-class AP, false-positive share per score threshold
$cli evaluate --checkpoint "$out/isr_new.pt" --seeds 301 302 303 304 305 306 --seconds 30 \
  --stride 3 --situations common --json "$out/eval_common.json" > "$out/eval_common.log" 2>&1
threshold=${THRESHOLD:-0.5}
# the long-tailed default mix: errors at the chosen threshold, per tag, and oracle enrichment
$cli evaluate --checkpoint "$out/isr_new.pt" --seeds 401 402 403 404 --seconds 60 --stride 2 \
  --score-threshold "$threshold" --json "$out/eval_default.json" > "$out/eval_default.log" 2>&1
# each rare tag forced on short drives: the gap to the common drives
for tag in night unlit_vehicles rain pedestrian_umbrella fog glare roadworks dense_traffic \
    cyclist_trailer pedestrian_pushchair car_transporter; do
  $cli evaluate --checkpoint "$out/isr_new.pt" --seeds 501 502 --seconds 8 --stride 4 \
    --situations "$tag" --score-threshold "$threshold" --json "$out/eval_$tag.json" \
    > "$out/eval_$tag.log" 2>&1
done
cat "$out/eval_common.log" "$out/eval_default.log"
