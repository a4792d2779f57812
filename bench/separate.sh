#!/usr/bin/env bash
# Stem separation: audiomill (Rust, candle) against PyTorch Demucs, same machine, same run.
#
#   bench/separate.sh [RUNS]    # default 3 runs per tool; prints a markdown table
#
# Needs: cargo, Debian's ffmpeg (to make the input), GNU time (/usr/bin/time), python3 with
# venv. The first run creates a virtualenv with the reference (PyPI: torch, demucs --no-deps,
# einops, julius, openunmix, pyyaml, safetensors) in $BENCH_VENV and writes a FULL-SIZE
# htdemucs checkpoint with random weights (the official hyperparameters, the official file
# format; random weights time exactly like trained ones) with tools/make_full_htdemucs.py.
# Nothing is downloaded from outside the package registries.
#
# Like for like: 60 s stereo 44.1 kHz input (the music-like signal of bench/run.sh), model
# `htdemucs`, shifts 1, overlap 0.25, default segment; both tools get the same thread count
# (BENCH_THREADS, default `nproc`): PyTorch through torch.set_num_threads, audiomill through
# RAYON_NUM_THREADS. Wall time and peak RSS (`/usr/bin/time -v`) of the whole command for
# audiomill (decode, separate, encode 4 WAV stems) and the separation itself for PyTorch
# (model load and file I/O excluded, which favours PyTorch); medians of RUNS runs, tools
# alternating.
#
# Environment: BENCH_DIR (default bench/work), BENCH_VENV (default $BENCH_DIR/venv),
# BENCH_SECONDS (default 60), BENCH_THREADS, AUDIOMILL (a binary instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-3}
seconds=${BENCH_SECONDS:-60}
threads=${BENCH_THREADS:-$(nproc)}
work=${BENCH_DIR:-$root/bench/work}
venv=${BENCH_VENV:-$work/venv}
mkdir -p "$work"

for tool in ffmpeg /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install ffmpeg time python3-venv)" >&2; exit 1; }
done

if [ -z "${AUDIOMILL:-}" ]; then
  cargo build --release -p audiomill >&2
  AUDIOMILL=$root/target/release/audiomill
fi

# --- The reference ------------------------------------------------------------------------
py=$venv/bin/python
if ! "$py" -c 'import torch, demucs' 2>/dev/null; then
  echo "installing the reference into $venv (PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --no-deps torch demucs openunmix
  "$venv/bin/pip" install --quiet filelock typing-extensions sympy networkx jinja2 fsspec
  "$venv/bin/pip" install --quiet einops julius pyyaml safetensors numpy omegaconf sphn lameenc
fi

models=$work/models
if [ ! -f "$models/htdemucs.yaml" ]; then
  "$py" tools/make_full_htdemucs.py --out "$models" >&2
fi

# --- Input --------------------------------------------------------------------------------
src=$work/sep-input.wav
if [ ! -f "$src" ] || [ "$(cat "$work/.sep-seconds" 2>/dev/null)" != "$seconds" ]; then
  chord='(0.16*sin(2*PI*F*t+0.3*sin(2*PI*5*t))+0.11*sin(2*PI*F*1.26*t)+0.08*sin(2*PI*F*1.5*t))*(0.75+0.25*sin(2*PI*0.7*t))'
  base='(220+55*mod(floor(t/2),4))'
  kick='0.25*sin(2*PI*60*t)*exp(-12*mod(t,0.5))'
  left="${chord//F/$base}+$kick"
  right="${chord//F/($base*1.002)}+$kick"
  ffmpeg -hide_banner -nostdin -loglevel error -y \
    -f lavfi -i "aevalsrc=exprs='$left|$right':s=44100:d=$seconds" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.06:sample_rate=44100:duration=$seconds:seed=3" \
    -filter_complex "[1]pan=stereo|c0=c0|c1=c0[n];[0][n]amix=inputs=2:normalize=0,alimiter=limit=0.95" \
    -c:a pcm_s16le "$src"
  echo "$seconds" >"$work/.sep-seconds"
fi

data=$work/sep-data
rm -rf "$data"
"$AUDIOMILL" models import "$models/htdemucs.yaml" --name htdemucs --data-dir "$data" >&2

# --- Timing -------------------------------------------------------------------------------
measure() { # OUT CMD...: appends "wall_seconds peak_kb"
  local out=$1
  shift
  local log=$work/time.log
  if ! /usr/bin/time -v -o "$log" "$@" >"$work/cmd.out" 2>"$work/cmd.err"; then
    echo "failed: $*" >&2
    tail -20 "$work/cmd.err" >&2
    return 1
  fi
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; w = s }
              /Maximum resident set size/ { r = $2 } END { print w, r }' "$log" >>"$out"
}
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

a=$work/sep-a.times
t=$work/sep-t.times
ts=$work/sep-t.inner
rm -f "$a" "$t" "$ts"
for ((i = 0; i < runs; i++)); do
  echo "== run $((i + 1))/$runs" >&2
  rm -rf "$work/stems"
  RAYON_NUM_THREADS=$threads measure "$a" "$AUDIOMILL" separate "$src" --model htdemucs \
    --out-dir "$work/stems" --shifts 1 --overlap 0.25 --format wav --data-dir "$data"
  measure "$t" "$py" bench/separate_torch.py --model "$models/htdemucs.yaml" --input "$src" \
    --threads "$threads" --shifts 1 --overlap 0.25
  "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$work/cmd.out" >>"$ts"
done
echo "   audiomill: $(tr '\n' ' ' <"$a")| pytorch: $(tr '\n' ' ' <"$t")| pytorch separation only: $(tr '\n' ' ' <"$ts")" >&2

at=$(cut -d' ' -f1 "$a" | median); ar=$(cut -d' ' -f2 "$a" | median)
tt=$(cut -d' ' -f1 "$t" | median); tr_=$(cut -d' ' -f2 "$t" | median)
tin=$(median <"$ts")

echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $seconds s stereo 44.1 kHz; htdemucs (full size); shifts 1, overlap 0.25; $threads threads; median of $runs runs; torch $("$py" -c 'import torch; print(torch.__version__)')"
echo
echo "| | audiomill | PyTorch Demucs | ratio audiomill/PyTorch |"
echo "|---|---|---|---|"
awk -v a="$at" -v t="$tin" 'BEGIN { printf "| wall time, separation (s) | %.1f (whole command) | %.1f (separation only) | %.2f |\n", a, t, a / t }'
awk -v a="$at" -v t="$tt" 'BEGIN { printf "| wall time, whole command (s) | %.1f | %.1f | %.2f |\n", a, t, a / t }'
awk -v a="$ar" -v t="$tr_" 'BEGIN { printf "| peak RSS (MB) | %.0f | %.0f | %.2f |\n", a / 1024, t / 1024, a / t }'
