#!/usr/bin/env bash
# The face-model training of one GPU lease (about 9 minutes of compute), as one prepared script.
#
#   here:  python -m tools.lease.carry pack-data --to carry/fer
#   there: bash tools/lease/gpu_face.sh            (device tool, carry ["carry"]; results in $OUT)
#   here:  python -m tools.lease.carry unpack-runs <files_at> --to runs/gpu
#
# Phase 1 trains the seed's VGG, ResNet and CNN (the VGG and ResNet are the teachers); phase 2
# distils their mean into our edge nets, beside an edge net on labels alone (what distillation adds).
# Each run fits its epochs to PHASE_S seconds (tools/train/face.py --budget-s) and is cut at
# PHASE_S + 45 s whatever happens, so the packing at the end always runs.
#
# Seen on an H200 (2026-11-27, 561 s): the three processes of a phase share the GPU by time-slicing
# and small nets are launch-bound (224 steps of 128 per epoch): VGG 2.1-2.8 s per epoch, ResNet 8.3 s,
# CNN 1.6 s, edge 1.9 s beside two distilling students (4.7 s for those, teachers included). In
# 230 s: VGG 62 epochs (PublicTest 68.99 %), ResNet 25 (67.09 %), CNN 131 (65.51 %), edge on labels
# 105 (68.71 %), edge32 distilled 53 (68.46 %), edge distilled 47 (66.76 %): distillation needs more
# epochs than one lease gives it. The runs were cut by the timeout because checkpoint and plot saving
# were not in the pace the budget was fitted to; --budget-s now counts them.
set -u
OUT=${OUT:-runs/gpu-out}
CARRY=${CARRY:-carry/fer}
PHASE_S=${PHASE_S:-230}
DATA=${DATA:-/tmp/edgeemo-data}
RUNS=${RUNS:-runs/gpu}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
python3 -m tools.lease.carry unpack-data "$CARRY" --to "$DATA" || exit 1

train() {  # name, then train_face.py arguments
    local name=$1; shift
    timeout $((PHASE_S + 45)) python3 -m tools.train.face --data "$DATA" --out "$RUNS/$name" \
        --budget-s "$PHASE_S" "$@" >"$RUNS/$name.log" 2>&1 &
}

start=$(date +%s)
train vgg --arch vgg --epochs 250
train resnet --arch resnet --epochs 250
train cnn --arch cnn --epochs 250
wait
echo "phase 1 done in $(( $(date +%s) - start )) s"; tail -n 2 "$RUNS"/*.log

teachers=$(ls "$RUNS"/vgg/best.pt "$RUNS"/resnet/best.pt 2>/dev/null)
train edge-kd --arch edge --epochs 300 --teacher $teachers
train edge32-kd --arch edge32 --epochs 300 --teacher $teachers
train edge-labels --arch edge --epochs 300
wait
echo "phase 2 done in $(( $(date +%s) - start )) s"; tail -n 2 "$RUNS"/*.log

python3 -m tools.lease.carry pack-runs "$RUNS" --to "$OUT"
for f in "$RUNS"/*.log; do echo "== $f"; cat "$f"; done >"$OUT/train.log"
