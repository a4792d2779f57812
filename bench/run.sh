#!/usr/bin/env bash
# audiomill's offline CLI against the ffmpeg CLI, on the same generated files, in one run.
#
#   bench/run.sh [RUNS]        # default 5 runs per task and tool; prints a markdown table
#
# Needs: cargo, Debian's ffmpeg, GNU time (/usr/bin/time, package `time`). Builds
# `cargo build --release -p audiomill`, generates a 10-minute stereo 44.1 kHz music-like
# signal with ffmpeg's lavfi (chords with vibrato and tremolo, pink noise, a beat), encodes the
# inputs once (MP3, FLAC, WAV), then times each task RUNS times per tool, alternating tools,
# and reports medians of the wall-clock time and of the peak RSS (`/usr/bin/time -v`).
#
# Same settings where they differ by default: audiomill's MP3 encoder runs LAME at algorithm
# quality 5 (`-q 5`), ffmpeg's libmp3lame at LAME's default 3 unless told: the MP3 row gives
# ffmpeg `-compression_level 5`. FLAC: both at their defaults (see BENCHMARKS.md).
#
# Threads: audiomill's engine is single-threaded. ffmpeg gets `-threads 1` (decoder and
# encoder) and `-filter_threads 1`, so both use one core for the work; neither is pinned.
#
# Environment: BENCH_DIR (work directory, default bench/work, ~400 MB), BENCH_SECONDS (signal
# length, default 600), AUDIOMILL (binary to use instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-5}
seconds=${BENCH_SECONDS:-600}
work=${BENCH_DIR:-$root/bench/work}
mkdir -p "$work"

for tool in ffmpeg /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install ffmpeg time)" >&2; exit 1; }
done

if [ -z "${AUDIOMILL:-}" ]; then
  cargo build --release -p audiomill >&2
  AUDIOMILL=$root/target/release/audiomill
fi
am() { "$AUDIOMILL" --data-dir "$work/data" "$@"; }

# --- Inputs -------------------------------------------------------------------------------
src=$work/music.wav
if [ ! -f "$src" ] || [ "$(cat "$work/.seconds" 2>/dev/null)" != "$seconds" ]; then
  echo "generating $seconds s of test signal in $work" >&2
  # Left and right: a three-note chord that changes every 2 s (vibrato, tremolo), a kick-like
  # decaying 60 Hz burst twice a second, and pink noise at about -24 dBFS.
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
  ffmpeg -hide_banner -nostdin -loglevel error -y -i "$src" -c:a libmp3lame -b:a 192k "$work/music.mp3"
  ffmpeg -hide_banner -nostdin -loglevel error -y -i "$src" -c:a flac "$work/music.flac"
  echo "$seconds" >"$work/.seconds"
fi

# Loudness row: if `analyze` has switches to leave out work ffmpeg's ebur128 does not do
# (tempo, waveform), use them, so that both measure loudness and true peak only.
analyze_opts=()
analyze_help=$(am analyze --help 2>&1 || true)
[[ $analyze_help == *--no-tempo* ]] && analyze_opts+=(--no-tempo)
[[ $analyze_help == *--waveform-buckets* ]] && analyze_opts+=(--waveform-buckets 0)

# Opus row: pending until `convert` writes Opus.
have_opus=1
if ! am convert "$work/music.wav" "$work/probe.opus" --format opus --bitrate 128 \
  >/dev/null 2>"$work/opus.err"; then
  have_opus=0
fi
rm -f "$work/probe.opus"

# --- Timing -------------------------------------------------------------------------------
# measure OUT_PREFIX CMD...: runs CMD under /usr/bin/time -v, appends "seconds kilobytes".
measure() {
  local out=$1
  shift
  local log=$work/time.log
  if ! /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$work/cmd.err"; then
    echo "failed: $*" >&2
    cat "$work/cmd.err" >&2
    return 1
  fi
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
      n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  echo "$wall $rss" >>"$out"
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# task NAME -- AUDIOMILL_ARGS... -- FFMPEG_ARGS...
rows=()
task() {
  local name=$1
  shift 2
  local ours=() theirs=()
  while [ "$1" != "--" ]; do ours+=("$1"); shift; done
  shift
  theirs=("$@")
  local a=$work/a.times f=$work/f.times
  rm -f "$a" "$f"
  echo "== $name" >&2
  for ((i = 0; i < runs; i++)); do
    measure "$a" "$AUDIOMILL" --data-dir "$work/data" "${ours[@]}"
    measure "$f" ffmpeg -hide_banner -nostdin -loglevel error -y -filter_threads 1 "${theirs[@]}"
  done
  local at ft ar fr
  at=$(cut -d' ' -f1 "$a" | median)
  ft=$(cut -d' ' -f1 "$f" | median)
  ar=$(cut -d' ' -f2 "$a" | median)
  fr=$(cut -d' ' -f2 "$f" | median)
  echo "   audiomill: $(tr '\n' ' ' <"$a")| ffmpeg: $(tr '\n' ' ' <"$f")" >&2
  rows+=("$(awk -v n="$name" -v at="$at" -v ft="$ft" -v ar="$ar" -v fr="$fr" 'BEGIN {
      printf "| %s | %.2f | %.2f | %.2f | %.1f MB | %.1f MB |", n, at, ft, at / ft, ar / 1024, fr / 1024 }')")
}

T=(-threads 1)
task "MP3 → WAV (decode)" -- convert "$work/music.mp3" "$work/out.wav" --format wav \
  -- "${T[@]}" -i "$work/music.mp3" "${T[@]}" -c:a pcm_s16le "$work/out-ff.wav"
task "FLAC → MP3 320k" -- convert "$work/music.flac" "$work/out.mp3" --format mp3 --bitrate 320 \
  -- "${T[@]}" -i "$work/music.flac" "${T[@]}" -c:a libmp3lame -b:a 320k -compression_level 5 "$work/out-ff.mp3"
if [ "$have_opus" = 1 ]; then
  task "WAV → Opus 128k" -- convert "$work/music.wav" "$work/out.opus" --format opus --bitrate 128 \
    -- "${T[@]}" -i "$work/music.wav" "${T[@]}" -c:a libopus -b:a 128k "$work/out-ff.opus"
else
  rows+=("| WAV → Opus 128k | pending | | | | |")
fi
task "WAV → FLAC" -- convert "$work/music.wav" "$work/out.flac" --format flac \
  -- "${T[@]}" -i "$work/music.wav" "${T[@]}" -c:a flac "$work/out-ff.flac"
task "Loudness + true peak (analyze / ebur128)" -- analyze "${analyze_opts[@]}" "$work/music.wav" \
  -- "${T[@]}" -i "$work/music.wav" -af ebur128=peak=true -f null -
task "Resample 44.1 → 48 kHz (WAV → WAV)" -- convert "$work/music.wav" "$work/out48.wav" --format wav --sample-rate 48000 \
  -- "${T[@]}" -i "$work/music.wav" "${T[@]}" -ar 48000 -c:a pcm_s16le "$work/out48-ff.wav"

# --- Report -------------------------------------------------------------------------------
echo
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $seconds s stereo 44.1 kHz input; median of $runs runs; $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
[ "${#analyze_opts[@]}" -gt 0 ] && echo "analyze run with: ${analyze_opts[*]}"
[ "$have_opus" = 1 ] || echo "Opus: pending ($(head -c 200 "$work/opus.err" | tr '\n' ' '))"
echo
echo "| task | audiomill median s | ffmpeg median s | ratio audiomill/ffmpeg | audiomill peak RSS | ffmpeg peak RSS |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
