#!/usr/bin/env bash
# Regenerates the seed corpus of the `probe_decode` fuzz target: one short, valid file of every
# container/codec pair the engine decodes (and of those being added: MP2, Opus), written by
# Debian's ffmpeg. Deterministic (fixed noise seed, -bitexact), each file well under libFuzzer's
# -max_len of 64 KiB, about 170 KB in all.
#
#   fuzz/make-seeds.sh            # writes fuzz/corpus/probe_decode/
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/probe_decode
mkdir -p "$out"
rm -f "$out"/seed-*

# A music-like signal: two tones and a little noise, `secs` long, `ch` channels at `rate` Hz.
make() { # make NAME SECS RATE CH [ffmpeg output options...]
  local name=$1 secs=$2 rate=$3 ch=$4
  shift 4
  ffmpeg -hide_banner -nostdin -loglevel error -y \
    -f lavfi -i "sine=frequency=440:sample_rate=$rate:duration=$secs" \
    -f lavfi -i "sine=frequency=660:sample_rate=$rate:duration=$secs" \
    -f lavfi -i "anoisesrc=color=pink:seed=7:amplitude=0.05:sample_rate=$rate:duration=$secs" \
    -filter_complex "[0][1][2]amix=inputs=3:normalize=0,pan=$([ "$ch" = 1 ] && echo mono || echo stereo)|c0=c0$([ "$ch" = 1 ] || echo '|c1=0.8*c0')[a]" \
    -map '[a]' -map_metadata -1 -fflags +bitexact -flags:a +bitexact "$@" "$out/seed-$name"
}

make s16.wav        0.2  8000  1 -c:a pcm_s16le
make s24.wav        0.05 44100 2 -c:a pcm_s24le
make f32.wav        0.05 48000 2 -c:a pcm_f32le
make u8.wav         0.2  8000  1 -c:a pcm_u8
make alaw.wav       0.2  8000  1 -c:a pcm_alaw
make s16be.aiff     0.1  22050 2 -c:a pcm_s16be
make f32be.aifc     0.05 44100 1 -c:a pcm_f32be -f aiff
make s24le.caf      0.05 44100 2 -c:a pcm_s24le
make s16.flac       0.1  44100 2 -c:a flac
make s24.flac       0.05 96000 1 -c:a flac -sample_fmt s32 -bits_per_raw_sample 24
make cbr.mp3        0.5  44100 2 -c:a libmp3lame -b:a 64k
make noxing.mp3     0.5  22050 1 -c:a libmp3lame -b:a 32k -write_xing 0
make l2.mp2         0.5  48000 2 -c:a mp2 -b:a 64k
make vorbis.ogg     0.5  44100 2 -c:a libvorbis -q:a 0
make opus.ogg       0.5  48000 2 -c:a libopus -b:a 32k
make opus.webm      0.5  48000 1 -c:a libopus -b:a 24k
make vorbis.webm    0.5  44100 1 -c:a libvorbis -q:a 0
make flac.mkv       0.05 44100 2 -c:a flac -f matroska
make aac.m4a        0.5  44100 2 -c:a aac -b:a 48k -f ipod
make alac.m4a       0.05 44100 2 -c:a alac -f ipod
make aac.adts       0.5  22050 1 -c:a aac -b:a 32k -f adts
ls -l "$out" | awk '{s += $5} END {print s " bytes in", NR - 1, "files"}'
