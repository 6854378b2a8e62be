#!/usr/bin/env bash
# The GPU run in one command, on a host where the offline bundle is installed and its env.sh
# sourced (scripts/README.md): kernel checks and the dev clips' transcription in float32 (token
# identity with openai-whisper), kernel checks and the benchmark in float16 against openai-whisper
# (CUDA, fp16) and faster-whisper (CUDA, fp16 and fp32), batched throughput; every report under OUT.
#
#   scripts/gpu_host/gpu_run.sh OUT          # on the GPU host (fails early when MAX sees no GPU)
#   scripts/gpu_host/gpu_run.sh OUT cpu      # the rehearsal here: the same steps on the CPU, smaller sizes
#
# Precompiled graphs (make precompile-gpu) are used when MODULAR_CACHE_DIR points at them.
set -euo pipefail
OUT=${1:?usage: scripts/gpu_host/gpu_run.sh OUT [gpu|cpu]}
DEVICE=${2:-gpu}
PY=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
log() { echo "[gpu_run $(date +%T)] $*" | tee -a "$OUT/gpu_run.log"; }

case "$DEVICE" in
  gpu)
    CHECK=(--require-accelerator); HALF=float16; HALF_STAGES=02,04
    BENCH=(-p 'engines=["max","openai-whisper","faster-whisper-fp16","faster-whisper-fp32"]'
           -p repeats=3 -p 'lengths=[10,30,60,120]' -p 'batch_sizes=[1,8,32,64]' -p batch_count=64) ;;
  cpu)
    CHECK=(); HALF=float32; HALF_STAGES=04  # no half precision on the CPU: stage 02 ran already
    BENCH=(-p 'engines=["max","openai-whisper","faster-whisper-fp32"]' -p repeats=1
           -p 'clips=["jfk","librispeech-1089-134686-0002"]' -p 'lengths=[10,30]'
           -p 'batch_sizes=[1,2]' -p batch_count=2) ;;
  *) echo "device must be gpu or cpu, got $DEVICE" >&2; exit 2 ;;
esac

start=$SECONDS
log "check ($DEVICE)"
$PY "$HERE/offline_host.py" check "${CHECK[@]}" 2>&1 | tee "$OUT/check.txt"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1

log "float32: kernel checks and transcription"
$PY -m maxwhisper_lib.lab.pipeline --device "$DEVICE" --dtype float32 --stages 02,03 \
    --reports-dir "$OUT" --run-id "$DEVICE-float32" -p int8_wer=false

log "$HALF: stages $HALF_STAGES (kernel checks where half precision exists, benchmark)"
$PY -m maxwhisper_lib.lab.pipeline --device "$DEVICE" --dtype "$HALF" --stages "$HALF_STAGES" \
    --reports-dir "$OUT" --run-id "$DEVICE-$HALF-bench" \
    -p 'roofline_batches=[]' "${BENCH[@]}"

log "done in $((SECONDS - start)) s: $OUT/$DEVICE-float32/index.html, $OUT/$DEVICE-$HALF-bench/index.html"
