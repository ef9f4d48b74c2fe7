#!/usr/bin/env bash
# How the shipped models/isr_small_synth.pt was made (on a GPU machine; see models/MODEL_CARD.md).
#   scripts/train_default_model.sh OUT_DIR [PYTHON]
# 1. measures training speed on 2 CPU cores (taskset, 2 torch threads, frames rendered in-process)
#    and picks the iteration count that takes 15 minutes there (at most 1200);
# 2. trains with exactly the command a user runs, with --device cuda;
# 3. evaluates the checkpoint on the held-out drives.
# Optional variants (VARIANTS=1) train with other settings for comparison.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [PYTHON]}
py=${2:-python3}
mkdir -p "$out"
cli="$py -m importance_sampler_ros.cli"
$py -c 'import torch, torchvision, numpy; print("torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available())'

taskset -c 0,1 $cli train --out /tmp/cpu_probe.pt --iterations 30 --device cpu --threads 2 \
  --workers 0 --log-every 5 > "$out/cpu_probe.log" 2>&1
iterations=$($py - "$out/cpu_probe.log" <<'PY'
import re, sys
rates = {int(m[0]): float(m[1]) for m in re.findall(r'^it (\d+) .* ([\d.]+) it/s$', open(sys.argv[1]).read(), re.M)}
steady = (30 - 5) / (30 / rates[30] - 5 / rates[5])  # it/s after the first 5 iterations
print(min(1200, round(15 * 60 * steady)))
print(f'cpu (2 cores) {steady:.3f} it/s -> 15 min = {round(15 * 60 * steady)} iterations', file=sys.stderr)
PY
)
echo "iterations: $iterations"

$cli train --out models/isr_small_synth.pt --iterations "$iterations" --seed 0 --device cuda \
  > "$out/train.log" 2>&1
tail -3 "$out/train.log"
cp models/isr_small_synth.pt "$out/"
$cli evaluate --checkpoint models/isr_small_synth.pt --device cuda --json "$out/eval.json" \
  > "$out/eval.log" 2>&1
cat "$out/eval.log"

if [ "${VARIANTS:-0}" = 1 ]; then
  variant() {  # name, extra train arguments...
    local name=$1; shift
    $cli train --out "/tmp/$name.pt" --seed 0 --device cuda "$@" > "$out/$name.log" 2>&1
    $cli evaluate --checkpoint "/tmp/$name.pt" --device cuda >> "$out/$name.log" 2>&1
    echo "== $name $*"; tail -16 "$out/$name.log"
  }
  variant variant_lr2e-3 --iterations "$iterations" --lr 2e-3
  variant variant_2x --iterations $((2 * iterations))
fi
