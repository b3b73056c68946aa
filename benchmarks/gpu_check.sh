#!/usr/bin/env bash
# One prepared check for the first session lent a GPU machine (the `device` tool): ≤ 8 minutes
# there, every figure into one file, $OUT/gpu_check.md (or $GPU_CHECK_OUT/…, else a temp dir).
#
#   bash benchmarks/gpu_check.sh          # on the GPU machine: CUDA tests, MFU in bf16 and fp32,
#                                         # 1/2/4/8 trials packed on one GPU, peak memory of the
#                                         # `wide` space's largest corner, a short music run
#   bash benchmarks/gpu_check.sh --cpu    # the same steps at a tiny size on CPU (≤ 3 min; CI)
#
# Install: the README's `make setup` where PyPI is reachable; on a machine with no network
# (the lent GPU machine) its preinstalled torch, plus wheels carried in .whl/ (soundfile,
# tensorboardX, optuna) and this checkout on PYTHONPATH. Every step runs under a time limit and
# is reported PASS/FAIL; the script exits 1 if any step failed.
#
# Before calling the device tool (here, once; both folders are git-ignored via
# .git/info/exclude, and carried with `carry: [".whl", ".music"]`):
#   echo /.whl/ >> .git/info/exclude; echo /.music/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     --platform any -d .whl soundfile cffi pycparser tensorboardX
#   mkdir -p .music && cp SOME_SONGS.ogg .music/    # e.g. fretsonfire-songs-muldjord's
# Ray's wheel (~80 MB) does not fit the tool's 64 MiB, so the GPU run packs trials as plain
# processes (pack_trials.py) and trains the music run's default side alone (no search).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
OUTDIR=${GPU_CHECK_OUT:-${OUT:-$(mktemp -d)}}
mkdir -p "$OUTDIR"
WORK=$(mktemp -d)  # music and WAVs: not into $OUT, which the device tool copies back
REPORT=$OUTDIR/gpu_check.md
JSON=$OUTDIR/gpu_check.jsonl
: >"$REPORT"
: >"$JSON"
FAILED=0
export PYTHONUNBUFFERED=1

say() { echo "$*" | tee -a "$REPORT"; }

# step NAME SECONDS CMD...: run CMD under a limit, its output into the report.
step() {
  local name=$1 limit=$2
  shift 2
  say ""
  say "## $name"
  say '```'
  local started=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" 2>&1 | tee -a "$REPORT"
  local rc=${PIPESTATUS[0]}
  say '```'
  if [ "$rc" = 0 ]; then
    say "PASS $name ($((SECONDS - started)) s)"
  else
    say "FAIL $name (exit $rc after $((SECONDS - started)) s)"
    FAILED=1
  fi
}

# Whether pip reaches its package index (no host named: pip's own configuration decides).
index_reachable() {
  PIP_RETRIES=0 PIP_TIMEOUT=5 python3 -m pip download -q --no-deps -d "$WORK/probe" pip \
    >/dev/null 2>&1
}

install() {
  if [ -x .venv/bin/python ] || { index_reachable && make -s setup >"$OUTDIR/setup.log" 2>&1; }; then
    PY=.venv/bin/python
    return
  fi
  # No PyPI here: the machine's own torch, carried wheels, this checkout on the path.
  PY=python3
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site \
      .whl/*.whl >>"$OUTDIR/setup.log" 2>&1
    export PYTHONPATH=/tmp/gpu-check-site
  fi
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
}

# Music for the continuation run: carried (.music/), installed from Debian, else synthetic.
music_dir() {
  local dir=$WORK/music
  mkdir -p "$dir"
  local debian=/usr/share/games/fretsonfire/data/songs/muldjord
  if [ "$MODE" = gpu ] && ls .music/*.ogg >/dev/null 2>&1; then
    cp .music/*.ogg "$dir"/
  elif [ "$MODE" = gpu ] && [ -d "$debian" ]; then
    for song in "$debian"/*/song.ogg; do cp "$song" "$dir/$(basename "$(dirname "$song")").ogg"; done
  else
    $PY - "$dir" <<'EOF'
import sys
import soundfile
from samplegan_tune.audio.synthetic import synthetic_songs
for seed in range(3):
    for name, song in synthetic_songs(30.0, 16000, seed=seed):
        soundfile.write(f"{sys.argv[1]}/{name}.wav", song.numpy(), 16000)
EOF
  fi
  echo "$dir"
}

install
say "# gpu_check ($MODE) $(date -u +%Y-%m-%dT%H:%MZ)"
step "environment" 60 $PY -c "
import torch, platform
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda)
print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none (CPU)')
print('cpu threads:', torch.get_num_threads())
"
[ "$MODE" = gpu ] && command -v nvidia-smi >/dev/null && step "nvidia-smi" 30 nvidia-smi

if [ "$MODE" = gpu ]; then
  DEVICE=cuda STEPS=20 PACK_SECONDS=15 PACK_COUNTS="1 2 4 8" TRAIN_S=75 POINTS=2
  SMALL=()
  # The `wide` space's largest corner: the memory a quarter of a GPU must hold.
  LARGEST=(--set segment=2048 --set context=16384 --set batch_size=32 --set g_channels=256
    --set g_depth=6 --set ae_channels=64 --set d_channels=64 --set d_depth=5
    --set rollout_steps=8 --set tbptt=0 --set latent=512 --set noise_dim=64)
else
  DEVICE=cpu STEPS=2 PACK_SECONDS=3 PACK_COUNTS="1 2" TRAIN_S=15 POINTS=1
  SMALL=(--set segment=64 --set context=256 --set crossfade=8 --set g_channels=8
    --set ae_channels=4 --set d_channels=4 --set latent=16 --set d_context_tail=64)
  LARGEST=("${SMALL[@]}" --set batch_size=4 --set rollout_steps=2)
fi

step "CUDA tests" 240 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
MFU=(benchmarks/mfu.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --json "$JSON")
step "MFU bf16, defaults" 150 $PY "${MFU[@]}" --dtype bf16 "${SMALL[@]}" --baseline fused_step=false
step "MFU fp32, defaults" 150 $PY "${MFU[@]}" --dtype fp32 "${SMALL[@]}" --baseline fused_step=false
step "MFU bf16, batch 32" 90 $PY "${MFU[@]}" --dtype bf16 "${SMALL[@]}" --set batch_size=32 \
  --skip generate,judge
step "MFU bf16, latent family" 90 $PY "${MFU[@]}" --dtype bf16 "${SMALL[@]}" \
  --set model_family=latent --set ae_pretrain_steps=1 --skip generate,judge
step "peak memory, wide's largest corner (bf16)" 120 $PY "${MFU[@]}" --dtype bf16 \
  "${LARGEST[@]}" --steps 2 --skip generate,judge
# shellcheck disable=SC2086
step "trials packed on one $DEVICE" 300 $PY benchmarks/pack_trials.py --device "$DEVICE" \
  --counts $PACK_COUNTS --seconds "$PACK_SECONDS" --json "$JSON" "${SMALL[@]}"
MUSIC=$(music_dir) && ls "$MUSIC"/* >/dev/null || { say "FAIL no music in $MUSIC"; FAILED=1; }
TRAIN=("$MUSIC"/*)
UNSEEN=${TRAIN[-1]}
unset 'TRAIN[-1]'
step "music continuation (default train, ${TRAIN_S} s)" $((TRAIN_S + 240)) \
  $PY benchmarks/music_continuation.py --sides default --budget "$TRAIN_S" \
  --train "${TRAIN[@]}" --unseen "$UNSEEN" --points "$POINTS" --seconds 4 \
  --out "$WORK/continuation"

say ""
if [ "$FAILED" = 0 ]; then say "gpu_check ($MODE): every step passed"; else say "gpu_check ($MODE): FAILED"; fi
echo "report: $REPORT"
exit "$FAILED"
