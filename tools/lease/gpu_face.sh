#!/usr/bin/env bash
# The face-model distillation of one GPU lease (about 8 minutes of compute), as one prepared script.
#
#   here:  python -m tools.lease.carry pack-data --to carry/fer    (faces + the teachers' targets at T = 4)
#   there: bash tools/lease/gpu_face.sh [distil|finetune]   (device tool, carry ["carry"]; results in $OUT)
#   here:  python -m tools.lease.carry unpack-runs <files_at> --to runs/gpu-kd
#
# Six students distil the teacher ensemble of ../shared/data/teachers side by side, each fitting its
# epochs to PHASE_S seconds (tools/train/face.py --budget-s) and cut at PHASE_S + 45 s whatever
# happens, so the packing at the end always runs: four architectures at one FER+ weight, and the
# middle-sized one at two other FER+ weights (the weight is chosen on PublicTest).
set -u
OUT=${OUT:-runs/gpu-out}
CARRY=${CARRY:-carry/fer}
PHASE_S=${PHASE_S:-420}
DATA=${DATA:-/tmp/edgeemo-data}
RUNS=${RUNS:-runs/gpu-kd}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
python3 -m tools.lease.carry unpack-data "$CARRY" --to "$DATA" || exit 1

train() {  # name, then train_face.py arguments
    local name=$1; shift
    timeout $((PHASE_S + 45)) python3 -m tools.train.face --data "$DATA" --out "$RUNS/$name" --budget-s "$PHASE_S" \
        --epochs 400 --batch 256 --lr 0.1 --targets "$DATA/teachers/fer2013_teachers.npz" --kd-temp 4 --kd-alpha 0.9 \
        "$@" >"$RUNS/$name.log" 2>&1 &
}

start=$(date +%s)
if [ "${1:-distil}" = finetune ]; then
    # Second lease: a warm restart of the best two (carry/init, fp16), Training faces only
    # (carry.py pack-data --no-public): a fresh cosine from 0.02, each run keeping its last epoch.
    ft() { local name=$1 init=$2; shift 2; train "$name" --init "carry/init/$init.pt" --lr 0.02 --ferplus-weight 0.1 "$@"; }
    ft edge28-kd10-ft-light edge28-kd10 --arch edge28 --aug light
    ft edge28-kd10-ft-strong edge28-kd10 --arch edge28 --aug strong
    ft edgedeep-kd20-ft-light edgedeep-kd20 --arch edge_deep --aug light
else
train edge-kd20 --arch edge --ferplus-weight 0.2
train edge28-kd20 --arch edge28 --ferplus-weight 0.2
train edgedeep-kd20 --arch edge_deep --ferplus-weight 0.2
train edge32-kd20 --arch edge32 --ferplus-weight 0.2
train edge28-kd10 --arch edge28 --ferplus-weight 0.1
train edge28-kd40 --arch edge28 --ferplus-weight 0.4
fi
sleep 60; echo "after 60 s:"; tail -n 2 "$RUNS"/*.log
wait
echo "training done in $(( $(date +%s) - start )) s"; tail -n 3 "$RUNS"/*.log

python3 -m tools.lease.carry pack-runs "$RUNS" --to "$OUT"
for f in "$RUNS"/*.log; do echo "== $f"; cat "$f"; done >"$OUT/train.log"
