#!/usr/bin/env python3
"""Write a FULL-SIZE htdemucs checkpoint with random weights, for benchmarks only.

The architecture is the published `htdemucs` (Demucs's conf/config.yaml `htdemucs:` section
with grids/mmi.py's dconv_mode 3, bottom_channels 512, 5 transformer layers; segment 39/5 s at
44.1 kHz). Random weights run exactly as fast as trained ones, so timing and memory figures
hold; the stems are noise. Saved in the official format (`serialize_model`, fp16 state,
`<sig>-<sha8>.th`) with a bag descriptor `htdemucs.yaml`, like demucs/remote/htdemucs.yaml.

    /opt/venvs/demucs/bin/python tools/make_full_htdemucs.py --out DIR
"""

import argparse
from fractions import Fraction
from pathlib import Path

import torch as th
from omegaconf import OmegaConf

from demucs.htdemucs import HTDemucs
from demucs.states import save_with_checksum, serialize_model

SIGNATURE = "bench001"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    th.manual_seed(0)
    model = HTDemucs(
        sources=["drums", "bass", "other", "vocals"],
        audio_channels=2, channels=48, growth=2, nfft=4096, depth=4,
        dconv_mode=3, bottom_channels=512, t_layers=5, t_heads=8,
        samplerate=44100, segment=Fraction(39, 5),
    )
    package = serialize_model(model, OmegaConf.create({"model": "htdemucs"}), half=True)
    for old in out.glob(f"{SIGNATURE}-*.th"):
        old.unlink()
    save_with_checksum(package, out / f"{SIGNATURE}.th")
    (out / "htdemucs.yaml").write_text(f"models: ['{SIGNATURE}']\n")
    [path] = out.glob(f"{SIGNATURE}-*.th")
    print(path)


if __name__ == "__main__":
    main()
