#!/usr/bin/env python3
"""Reference fixtures for audiomill's stem separation engine (crates/separate).

The Rust implementation of HTDemucs is held to the reference implementation, the `demucs`
package on PyTorch, with small randomly initialized models that the reference code builds and
saves in the official checkpoint format. This script writes, into
`crates/separate/tests/fixtures/` (or `--out DIR`):

- `tiny0001-<sha8>.th`, `tiny0002-<sha8>.th`: reduced HTDemucs models (the hyperparameters of
  the published `htdemucs`, read from Demucs's conf/config.yaml and grids/mmi.py: dconv_mode 3,
  bottom_channels 512 → here a few channels, cross transformer, frequency embedding…, with
  fewer channels and layers, a smaller STFT and a lower sample rate so that the data stays
  small), saved by `demucs.states.serialize_model` + `save_with_checksum` exactly as the
  published files are;
- `tiny0006-<sha8>.th`: the 6-source variant without bottom convolutions (as htdemucs_6s);
- `tiny.yaml`, `tiny_bag.yaml` (two models, a non-identity weight matrix), `tiny_6s.yaml`:
  bag descriptors in the format of demucs/remote/*.yaml;
- `models.json`: per model its signature, file name, sha256 and kwargs (a Fraction as
  `[numerator, denominator]`), for the Rust checkpoint-format test;
- `cases.json` + `reference.safetensors`: inputs and reference outputs (float32) of
  `model.forward`, of `demucs.apply.apply_model` (split, overlap, transition power, segment,
  shifts with the random offsets made deterministic) and of `demucs.api.Separator`
  end to end (input normalization included). Tensors are `<case>.input` / `<case>.output`.

Every reference output is computed with the models loaded back from the written files (the
state is stored in fp16), so that Python and Rust use bit-identical weights.

Install the reference (development only; audiomill never needs it to build, test or run):

    python3 -m venv /opt/venvs/demucs
    /opt/venvs/demucs/bin/pip install --no-deps torch demucs openunmix
    /opt/venvs/demucs/bin/pip install filelock typing-extensions sympy networkx jinja2 fsspec einops julius pyyaml safetensors numpy omegaconf sphn lameenc
    /opt/venvs/demucs/bin/python tools/separation_fixtures.py

The output is deterministic (fixed seeds, one thread).
"""

import argparse
import hashlib
import json
import random
from fractions import Fraction
from pathlib import Path

import torch as th
from omegaconf import OmegaConf
from safetensors.torch import save_file

import demucs.apply
from demucs.api import Separator
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs
from demucs.pretrained import get_model
from demucs.states import load_model, save_with_checksum, serialize_model

SOURCES_4 = ["drums", "bass", "other", "vocals"]
SOURCES_6 = SOURCES_4 + ["guitar", "piano"]
SAMPLERATE = 8000
SEGMENT = Fraction(6, 5)  # seconds; 9600 samples at 8 kHz (htdemucs: Fraction(39, 5))

# The published htdemucs hyperparameters (conf/config.yaml `htdemucs:` + grids/mmi.py), with
# the sizes reduced. Everything not listed keeps HTDemucs's defaults, as in the real files.
TINY = dict(
    audio_channels=2,
    channels=8,
    growth=2,
    nfft=512,
    depth=3,
    freq_emb=0.2,
    emb_scale=10,
    emb_smooth=True,
    kernel_size=8,
    stride=4,
    time_stride=2,
    context=1,
    context_enc=0,
    norm_starts=4,
    norm_groups=4,
    dconv_mode=3,
    dconv_depth=2,
    dconv_comp=8,
    dconv_init=1e-3,
    bottom_channels=16,
    t_layers=3,
    t_heads=2,
    t_hidden_scale=4.0,
    t_dropout=0.0,
    t_layer_scale=True,
    t_gelu=True,
    t_emb="sin",
    t_norm_in=True,
    t_norm_first=True,
    t_norm_out=True,
    t_cross_first=False,
    samplerate=SAMPLERATE,
    segment=SEGMENT,
)


def build(seed, sources, **overrides):
    th.manual_seed(seed)
    model = HTDemucs(sources=sources, **{**TINY, **overrides})
    # Trained weights are not at their init values: layer scales start at 1e-4/1e-3 and norms
    # at (1, 0), which would hide a wrong residual branch or norm in a parity test. Move every
    # such parameter away from its init so that each piece shapes the output.
    gen = th.Generator().manual_seed(seed + 1000)
    with th.no_grad():
        for name, p in model.named_parameters():
            noise = th.randn(p.shape, generator=gen)
            if name.endswith(".scale"):
                p.copy_(0.3 + 0.2 * noise)
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.add_(0.05 * noise)
            elif "emb" in name:
                p.add_(0.1 * noise)
    return model


def save(model, out: Path, signature: str) -> Path:
    training_args = OmegaConf.create({"model": "htdemucs", "dset": {"segment": float(SEGMENT)}})
    package = serialize_model(model, training_args, half=True)
    save_with_checksum(package, out / f"{signature}.th")
    [path] = sorted(out.glob(f"{signature}-*.th"))
    return path


def music(length, seed, rate=SAMPLERATE):
    """A deterministic music-like stereo signal: harmonics, noise bursts, decaying clicks."""
    gen = th.Generator().manual_seed(seed)
    t = th.arange(length, dtype=th.float64) / rate
    left = th.zeros(length, dtype=th.float64)
    right = th.zeros(length, dtype=th.float64)
    for k, f in enumerate([110.0, 220.0, 330.0, 523.25, 659.0]):
        left += 0.12 / (k + 1) * th.sin(2 * th.pi * f * t + 0.3 * th.sin(2 * th.pi * 3 * t))
        right += 0.12 / (k + 1) * th.sin(2 * th.pi * f * 1.003 * t + 0.2 * k)
    beat = th.exp(-25 * th.remainder(t, 0.25)) * th.sin(2 * th.pi * 60 * t)
    noise = th.randn(2, length, generator=gen, dtype=th.float64)
    burst = (th.remainder(t, 0.5) < 0.05).double()
    left += 0.3 * beat + 0.08 * burst * noise[0]
    right += 0.25 * beat + 0.08 * burst * noise[1] + 0.02 * noise[0]
    return th.stack([left, right]).float()


class FixedOffsets:
    """Stands in for `random.randint` in demucs.apply: hands out known shift offsets."""

    def __init__(self, offsets):
        self.pending = list(offsets)
        self.used = []

    def __call__(self, low, high):
        value = self.pending.pop(0)
        assert low <= value <= high, (low, value, high)
        self.used.append(value)
        return value


def with_offsets(offsets, run):
    fixed = FixedOffsets(offsets)
    original = demucs.apply.random.randint
    demucs.apply.random.randint = fixed
    try:
        result = run()
    finally:
        demucs.apply.random.randint = original
    assert not fixed.pending, "unused offsets"
    return result, fixed.used


def kwargs_json(kwargs):
    def convert(v):
        if isinstance(v, Fraction):
            return [v.numerator, v.denominator]
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        return v

    return {k: convert(v) for k, v in kwargs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent
                        / "crates/separate/tests/fixtures")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.th"):
        old.unlink()
    th.set_num_threads(1)
    random.seed(0)

    files = {
        "tiny0001": save(build(1, SOURCES_4), out, "tiny0001"),
        "tiny0002": save(build(2, SOURCES_4), out, "tiny0002"),
        "tiny0006": save(build(6, SOURCES_6, bottom_channels=0), out, "tiny0006"),
    }
    (out / "tiny.yaml").write_text("models: ['tiny0001']\n")
    (out / "tiny_bag.yaml").write_text(
        "models: ['tiny0001', 'tiny0002']\n"
        "weights: [\n  [1., 0.5, 0., 2.],\n  [1., 1.5, 1., 0.],\n]\n")
    (out / "tiny_6s.yaml").write_text("models: ['tiny0006']\n")

    models = {}
    for sig, path in files.items():
        package = th.load(path, "cpu", weights_only=False)
        models[sig] = {
            "signature": sig,
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "klass": f"{package['klass'].__module__}.{package['klass'].__name__}",
            "kwargs": kwargs_json(package["kwargs"]),
            "state_keys": len(package["state"]),
        }
    (out / "models.json").write_text(json.dumps(models, indent=1) + "\n")

    bag = {name: get_model(name.removesuffix(".yaml"), repo=out)
           for name in ["tiny.yaml", "tiny_bag.yaml", "tiny_6s.yaml"]}
    for b in bag.values():
        b.eval()
    segment_samples = int(SEGMENT * SAMPLERATE)
    max_shift = int(0.5 * SAMPLERATE)
    tensors = {}
    cases = []

    def case(name, kind, model, options, inp, output, note, input_key=None):
        # Cases that share an input share its tensor (the key names the first case using it).
        input_key = input_key or f"{name}.input"
        tensors.setdefault(input_key, inp.contiguous())
        tensors[f"{name}.output"] = output.contiguous()
        cases.append({"name": name, "kind": kind, "model": model, "options": options,
                      "tensors": {"input": input_key, "output": f"{name}.output"},
                      "note": note})

    # forward: the network alone, at the training length and shorter (padded inside).
    for yaml, seed in [("tiny.yaml", 10), ("tiny_6s.yaml", 11)]:
        net = bag[yaml].models[0]
        for label, length in [("full", segment_samples), ("short", segment_samples * 2 // 3 + 7)]:
            mix = music(length, seed)[None]
            with th.no_grad():
                y = net(mix)
            case(f"forward_{yaml.removesuffix('.yaml')}_{label}", "forward", yaml, {}, mix, y,
                 f"model(mix) with T={length} (training length {segment_samples})")

    # apply_model: split, overlap, transition power, segment, shifts, bag weights.
    length = int(1.9 * segment_samples) + 13
    mix = music(length, 20)[None]
    apply_cases = [
        ("apply_plain", "tiny.yaml", dict(shifts=0, split=True, overlap=0.25,
                                          transition_power=1.0, segment=None), [], mix),
        ("apply_shifts2", "tiny.yaml", dict(shifts=2, split=True, overlap=0.25,
                                            transition_power=1.0, segment=None),
         [1234, 3071], mix),
        ("apply_overlap_half_tp2", "tiny.yaml", dict(shifts=0, split=True, overlap=0.5,
                                                     transition_power=2.0, segment=None), [], mix),
        ("apply_short_segment", "tiny.yaml", dict(shifts=0, split=True, overlap=0.25,
                                                  transition_power=1.0,
                                                  segment=float(SEGMENT) * 0.6), [], mix),
        ("apply_bag_shift", "tiny_bag.yaml", dict(shifts=1, split=True, overlap=0.25,
                                                  transition_power=1.0, segment=None),
         [777, 2500], mix),
        ("apply_nosplit_short", "tiny.yaml", dict(shifts=0, split=False, overlap=0.25,
                                                  transition_power=1.0, segment=None), [],
         music(segment_samples // 2 + 3, 21)[None]),
    ]
    for name, yaml, options, offsets, inp in apply_cases:
        assert all(0 <= o <= max_shift for o in offsets)
        with th.no_grad():
            y, used = with_offsets(offsets, lambda: apply_model(bag[yaml], inp, **options))
        case(name, "apply", yaml, {**options, "offsets": used}, inp, y,
             "demucs.apply.apply_model; offsets in the order random.randint was called",
             input_key="apply.input" if inp is mix else None)

    # Separator end to end: normalization by the mono mix, apply_model, de-normalization.
    wav = 0.3 * music(int(1.8 * segment_samples) + 5, 30) + 0.05
    for name, yaml, shifts, offsets in [("separator_plain", "tiny.yaml", 0, []),
                                        ("separator_bag_shift", "tiny_bag.yaml", 1, [1500, 42])]:
        separator = Separator(model=yaml.removesuffix(".yaml"), repo=out, device="cpu",
                              shifts=shifts, overlap=0.25, split=True)
        with th.no_grad():
            (_, stems), used = with_offsets(offsets, lambda: separator.separate_tensor(wav))
        y = th.stack([stems[s] for s in separator.model.sources])
        case(name, "separator", yaml, {"shifts": shifts, "split": True, "overlap": 0.25,
                                       "transition_power": 1.0, "segment": None,
                                       "offsets": used}, wav, y,
             "demucs.api.Separator.separate_tensor at the model's rate; input [C, L], "
             "output [S, C, L] in source order", input_key="separator.input")

    # A check that every branch matters: the output moves when any parameter group is zeroed.
    for c in cases:
        t = tensors[c["tensors"]["output"]]
        assert th.isfinite(t).all() and t.abs().max() > 1e-3, c["name"]

    save_file(tensors, str(out / "reference.safetensors"), metadata={"generator": "separation_fixtures.py"})
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    for c in cases:
        shape = tuple(tensors[c["tensors"]["output"]].shape)
        print(f"{c['name']:28} {c['kind']:9} {c['model']:14} output {shape}")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"fixtures: {size / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main()
