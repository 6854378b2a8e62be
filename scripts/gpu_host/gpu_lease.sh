#!/usr/bin/env bash
# The GPU run through a runner that copies the working tree plus at most ~64 MiB per call and
# keeps the machine (and its /root) only while calls follow each other (scripts/README.md,
# "Recipe 3"). Fewer calls than the wheel bundle: the wheels are installed here for the host's
# Python and the installed tree is xz-compressed (327 MiB of wheels -> ~220 MiB); weights travel
# as the CTranslate2 folder alone (the .pt and safetensors are derived on the host).
#
#   scripts/gpu_host/gpu_lease.sh pack                  # here: .stage/carry/pNN/ (one folder per call)
#   scripts/gpu_host/gpu_lease.sh part N                # host: keep part N under $LEASE (/root/mw)
#   scripts/gpu_host/gpu_lease.sh install N             # host: part N (the last), verify, unpack, weights
#   scripts/gpu_host/gpu_lease.sh stage OUT DTYPE STAGES [papermill -p ...]   # host: one pipeline run
#   scripts/gpu_host/gpu_lease.sh loop OUT [DTYPE [gpu_decode_loop.py options]]  # host: the device loop
#   scripts/gpu_host/gpu_lease.sh server OUT [REQUESTS]  # host: maxwhisper-server under load (lab/server_load.py)
#   scripts/gpu_host/gpu_lease.sh sizes OUT [MODELS]     # host: every size (lab/benchmark/gpu_sizes.py; DTYPES, DEADLINE)
#   scripts/gpu_host/gpu_lease.sh throughput OUT [MODEL] # host: 64 files batched (lab/benchmark/batch_throughput.py)
#
# `install` writes $LEASE/env.sh; `stage` sources it, runs the pipeline into $LEASE/reports with a
# deadline and leaves a tar of every report (and its log) in OUT, so a run cut short still
# brings back what it wrote.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
LEASE=${LEASE:-/root/mw}
PART_MIB=${PART_MIB:-57}
log() { echo "[gpu_lease $(date +%T)] $*"; }
unxz() {  # xz's command when there is one, else Python's lzma
  if command -v xz > /dev/null; then xz -dc "$1"; else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer, 1 << 22)' "$1"
  fi
}

use_env() {  # the installed packages, then this call's copy of the tree (its path may change)
  # shellcheck disable=SC1091
  . "$LEASE/env.sh"
  export PYTHONPATH=$ROOT:$PYTHONPATH
}

pack() {
  local stage=$ROOT/.stage pay=$ROOT/.stage/lease
  [ -d "$stage/site" ] || { echo "no $stage/site: install the gathered wheels there first" >&2; exit 2; }
  [ -f "$ROOT/weights/tiny.en/ct2/model.bin" ] || { echo "extract tiny.en first" >&2; exit 2; }
  rm -rf "$stage/carry" && mkdir -p "$pay"
  if [ ! -f "$pay/site.tar.xz" ] || [ -n "$(find "$stage/site" -newer "$pay/site.tar.xz" | head -1)" ]; then
    log "compressing site/ (xz -9: minutes)"
    tar -C "$stage" -cf - site | xz -9 -T2 > "$pay/site.tar.xz.tmp" && mv "$pay/site.tar.xz.tmp" "$pay/site.tar.xz"
  fi
  tar -C "$ROOT/weights/tiny.en" -cf - ct2 | xz -6 -T2 > "$pay/weights.tar.xz"
  if [ -d "$ROOT/build/precompiled" ]; then
    tar -C "$ROOT/build" -cf - precompiled | xz -9 -T2 > "$pay/precompiled.tar.xz"
  fi
  (cd "$pay" && sha256sum ./*.tar.xz > payload.SHA256SUMS)
  tar -C "$pay" -cf "$stage/payload.tar" .
  rm -rf "$stage/parts" && mkdir -p "$stage/parts"
  if [ -n "${PARTS:-}" ]; then  # that many equal parts (when the last one would be a sliver)
    split -n "$PARTS" -d -a 2 "$stage/payload.tar" "$stage/parts/part."
  else
    split -b "${PART_MIB}M" -d -a 2 "$stage/payload.tar" "$stage/parts/part."
  fi
  (cd "$stage/parts" && sha256sum part.* > parts.SHA256SUMS)
  local n=0
  for part in "$stage"/parts/part.*; do
    n=$((n + 1))
    mkdir -p "$stage/carry/p$(printf %02d $n)"
    ln "$part" "$stage/parts/parts.SHA256SUMS" "$stage/carry/p$(printf %02d $n)/"
  done
  rm "$stage/payload.tar"
  ls -l "$pay" "$stage/parts"
  log "$n parts: .stage/carry/p01 ... p$(printf %02d $n)"
}

part() {
  local dir=$ROOT/.stage/carry/p$(printf %02d "$1")
  mkdir -p "$LEASE/parts"
  cp "$dir"/part.* "$dir/parts.SHA256SUMS" "$LEASE/parts/"
  (cd "$LEASE/parts" && ls part.* | tr '\n' ' ' && echo)
}

install() {
  part "$1"
  cd "$LEASE/parts"
  sha256sum -c parts.SHA256SUMS
  mkdir -p "$LEASE/pay"
  cat part.* | tar -C "$LEASE/pay" -xf -
  cd "$LEASE/pay" && sha256sum -c payload.SHA256SUMS
  log "unpacking"
  unxz site.tar.xz | tar -C "$LEASE" -xf - &
  mkdir -p "$LEASE/build" "$LEASE/src"
  unxz weights.tar.xz | tar -C "$LEASE/src" -xf - &
  [ -f precompiled.tar.xz ] && { unxz precompiled.tar.xz | tar -C "$LEASE/build" -xf - & }
  wait
  rm -rf "$LEASE/parts" "$LEASE/pay"
  cd "$ROOT"
  local shim=""
  if ! ldconfig -p | grep 'libcublas.so.12' > /dev/null; then
    # ctranslate2's wheel dlopens cuBLAS 12; the image holds cuBLAS 13 (PyTorch cu13). Offer it
    # under the name CTranslate2 asks for; the benchmark's faster-whisper CUDA rows say so.
    local lib
    lib=$(python3 - <<'EOF'
import glob, os, site
for root in site.getsitepackages():
    for hit in glob.glob(os.path.join(root, "nvidia", "**", "libcublas.so.1*"), recursive=True):
        print(os.path.dirname(hit)); raise SystemExit
EOF
)
    if [ -n "$lib" ]; then
      shim=$LEASE/cublas12
      mkdir -p "$shim"
      ln -sf "$lib"/libcublas.so.1[3-9] "$shim/libcublas.so.12"
      ln -sf "$lib"/libcublasLt.so.1[3-9] "$shim/libcublasLt.so.12"
      shim="$shim:$lib"
      log "cuBLAS 12 shim: $LEASE/cublas12 -> $lib"
    fi
  fi
  cat > "$LEASE/env.sh" <<EOF
export PYTHONPATH=$LEASE/site\${PYTHONPATH:+:\$PYTHONPATH}
export PATH=$LEASE/site/bin:\$PATH
export MODULAR_CACHE_DIR=$LEASE/build/precompiled
export JUPYTER_PATH=$LEASE/site/share/jupyter
export MAXWHISPER_WEIGHTS_DIR=$LEASE/weights
export PYTHONUNBUFFERED=1
${shim:+export LD_LIBRARY_PATH=$shim\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH\}}
EOF
  use_env
  python3 -m maxwhisper_lib.checkpoints extract --model tiny.en --source "$LEASE/src/ct2" 2>&1 | tail -1
  python3 "$HERE/offline_host.py" check ${CHECK_ARGS---require-accelerator}
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  # faster-whisper on CUDA, through the benchmark's own engine, before the benchmark counts on it
  # (a cuBLAS that does not load shows here)
  timeout 120 python3 - <<'EOF' || log "faster-whisper on CUDA: FAILED (leave its engines out)"
from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.lab.benchmark.engines import make_engine
engine = make_engine("faster-whisper-fp16", "tiny.en", "gpu")
engine.load()
audio = load_audio("data/jfk.flac")
engine.transcribe(audio)  # warm-up
result = engine.transcribe(audio)
print(f"faster-whisper fp16 on CUDA: {result.seconds:.3f} s: {result.text.strip()}")
EOF
  log "installed"
}

stage() {
  local out=$1 dtype=$2 stages=$3
  shift 3
  use_env
  mkdir -p "$LEASE/reports"
  local id=gpu-$dtype-s${stages//,/}-$(date +%H%M%S)
  set +e
  timeout "${DEADLINE:-540}" python3 -m maxwhisper_lib.lab.pipeline --device gpu --dtype "$dtype" \
      --stages "$stages" --reports-dir "$LEASE/reports" --run-id "$id" "$@" 2>&1 \
    | tee "$LEASE/reports/$id.log"
  local rc=${PIPESTATUS[0]}
  set -e
  log "pipeline rc=$rc"
  { nvidia-smi; python3 "$HERE/offline_host.py" check; } > "$LEASE/reports/host.txt" 2>&1 || true
  tar -C "$LEASE" -czf "$out/$id.tgz" reports
  return 0
}

loop() {  # the device loop's own evidence (scripts/gpu_host/gpu_decode_loop.py): kernels, capture, step times
  local out=$1 dtype=${2:-float16}
  shift 2 || true
  use_env
  mkdir -p "$LEASE/reports"
  local id=gpu-loop-$dtype-$(date +%H%M%S)
  set +e
  timeout "${DEADLINE:-300}" python3 "$HERE/gpu_decode_loop.py" --out "$LEASE/reports/$id.jsonl" \
      --dtype "$dtype" "$@" 2>&1 | tee "$LEASE/reports/$id.log"
  log "gpu_decode_loop rc=${PIPESTATUS[0]}"
  set -e
  tar -C "$LEASE" -czf "$out/$id.tgz" reports
  return 0
}

server() {  # maxwhisper-server on the GPU: 1-64 clients, one request at a time, faster-whisper fp16
  local out=$1 requests=${2:-64}
  use_env
  mkdir -p "$LEASE/reports"
  local id=gpu-server-$(date +%H%M%S)
  set +e
  timeout "${DEADLINE:-300}" python3 -m maxwhisper_lib.lab.server_load --device gpu \
      --requests "$requests" --output "$LEASE/reports/$id" 2>&1 | tee "$LEASE/reports/$id.log"
  log "server_load rc=${PIPESTATUS[0]}"
  set -e
  tar -C "$LEASE" -czf "$out/$id.tgz" reports
  return 0
}

sizes() {  # issue 40: every size's encoder window and decoder token, MAX beside CTranslate2 and PyTorch
  local out=$1 models=${2:-tiny.en,base,small,medium,large-v3-turbo,distil-large-v3,large-v3}
  use_env
  mkdir -p "$LEASE/reports"
  local id=gpu-sizes-$(date +%H%M%S) deadline=${DEADLINE:-420}
  set +e  # no size starts after deadline - 150 s (the largest takes about that); then the tar
  timeout "$deadline" python3 -m maxwhisper_lib.lab.benchmark.gpu_sizes --device gpu \
      --models "$models" --dtypes "${DTYPES:-float16}" --deadline $((deadline - 150)) \
      --output "$LEASE/reports/$id" 2>&1 | tee "$LEASE/reports/$id.log"
  log "gpu_sizes rc=${PIPESTATUS[0]}"
  set -e
  { nvidia-smi; python3 "$HERE/offline_host.py" check; } > "$LEASE/reports/$id/host.txt" 2>&1 || true
  tar -C "$LEASE" -czf "$out/$id.tgz" reports
  return 0
}

throughput() {  # issue 40: 64 files of 30 s, MAX transcribe_batch against BatchedInferencePipeline
  local out=$1 model=${2:-large-v3-turbo}
  use_env
  mkdir -p "$LEASE/reports"
  local id=gpu-throughput-$(date +%H%M%S)
  set +e
  timeout "${DEADLINE:-300}" python3 -m maxwhisper_lib.lab.benchmark.batch_throughput --device gpu \
      --model "$model" --files "${FILES:-64}" --batches "${BATCHES:-16,64}" \
      --output "$LEASE/reports/$id" 2>&1 | tee "$LEASE/reports/$id.log"
  log "batch_throughput rc=${PIPESTATUS[0]}"
  set -e
  tar -C "$LEASE" -czf "$out/$id.tgz" reports
  return 0
}

cmd=${1:?usage: scripts/gpu_host/gpu_lease.sh pack | part N | install N | stage OUT DTYPE STAGES [...] | loop OUT [DTYPE [...]] | server OUT [REQUESTS] | sizes OUT [MODELS] | throughput OUT [MODEL]}
shift
case "$cmd" in
  pack) pack ;;
  part) part "$@" ;;
  install) install "$@" ;;
  stage) stage "$@" ;;
  loop) loop "$@" ;;
  server) server "$@" ;;
  sizes) sizes "$@" ;;
  throughput) throughput "$@" ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
