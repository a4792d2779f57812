#!/usr/bin/env python3
"""The PyTorch side of bench/separate.sh: Demucs's own separation of one file, timed.

Loads the model as Demucs does (a bag `.yaml` with its `.th` files beside it), reads the WAV,
and runs what `demucs.api.Separator.separate_tensor` runs (normalization by the mono mix,
`apply_model` with the given shifts/overlap, de-normalization) with `torch.set_num_threads`.
Prints JSON: the wall time of the separation alone and the process's peak RSS.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import torch as th

from demucs.apply import apply_model
from demucs.audio import convert_audio
from demucs.pretrained import get_model


def read_wav(path):
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        frames = w.readframes(w.getnframes())
        data = np.frombuffer(frames, dtype="<i2").reshape(-1, w.getnchannels()).T
        return th.from_numpy(data.astype("float32") / 32768.0), w.getframerate()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="bag .yaml (its .th files beside it)")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shifts", type=int, default=1)
    p.add_argument("--overlap", type=float, default=0.25)
    args = p.parse_args()
    th.set_num_threads(args.threads)
    model = get_model(args.model.stem, repo=args.model.parent)
    model.eval()
    wav, rate = read_wav(args.input)
    wav = convert_audio(wav, rate, model.samplerate, model.audio_channels)
    start = time.perf_counter()
    with th.no_grad():
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std() + 1e-8
        out = apply_model(model, ((wav - mean) / std)[None], shifts=args.shifts,
                          overlap=args.overlap, split=True)
        out = out * std + mean
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "stems": list(out.shape)}))


if __name__ == "__main__":
    main()
