"""The models of the zoo sweep (benchmarks/model_zoo.py): which, how each is built, and its
example inputs. Every model has random weights (nothing is downloaded).

- torchvision: every classification model, `torchvision.models.list_models(module=
  torchvision.models)`, built by `get_model(name)`, at 1x3x64x64 except where the
  architecture needs another size (`TORCHVISION_SIZES`) or is built for one
  (`TORCHVISION_OPTIONS`: the ViTs are built for a 64x64 image, 56x56 for patch 14;
  the architecture is unchanged, only the number of patches).
- timm: a seeded sample of `timm.list_models()`: the names shuffled by `random.Random(seed)`,
  kept in that order while their parameter count (the model built on the meta device, or
  for real where that fails) is under a bound, until there are enough (`timm_sample`). An
  input of 64x64 (models of a fixed input size built with `img_size=64` where they take it),
  or the model's default size where 64 fails in eager.
- transformers: `TRANSFORMERS`, architectures across encoders, decoders, encoder-decoders,
  vision and audio, each built from its config class with a tiny random config (hidden
  32-64, 2 layers, vocabulary 128), the library's default attention implementation, and
  wrapped by `HFMain` to take positional tensors and return the main tensor. Text models
  get token ids and an attention mask whose second row is padded (so the mask matters).

Every model is built by `smelt.zoo.seeded` (seed 0, batch norms given non-trivial
statistics, eval mode); inputs come from a seeded generator (`inputs(seed)`; seed 0 is the
example the sweep traces, others are calibration batches of the same shape).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benchmarks.zoo_torchvision import import_timm, import_torchvision
from smelt.zoo import seeded

ZOOS = ("torchvision", "timm", "transformers")
IMAGE = 64
TIMM_SEED = 0
TIMM_COUNT = 40
TIMM_MAX_PARAMS = 30_000_000

#: torchvision models that need another input size (found on the meta device): inception_v3
#: pools below 96, MaxViT's 7x7 partitions need the 224 it is built for
TORCHVISION_SIZES = {"inception_v3": 96, "maxvit_t": 224}
#: constructor options: ViTs built for the sweep's image (their image size is fixed)
TORCHVISION_OPTIONS: dict[str, dict[str, Any]] = {
    "vit_b_16": {"image_size": 64}, "vit_b_32": {"image_size": 64},
    "vit_l_16": {"image_size": 64}, "vit_l_32": {"image_size": 64},
    "vit_h_14": {"image_size": 56},
}


@dataclass(frozen=True)
class ZooModel:
    """One model of the sweep: its zoo, name, family (classification, encoder, decoder,
    encoder-decoder, vision, audio), a builder and its inputs for a seed."""

    zoo: str
    name: str
    family: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int], tuple[torch.Tensor, ...]]
    notes: dict[str, Any] = field(default_factory=dict)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + seed)


def image_inputs(size: int, batch: int = 1) -> Callable[[int], tuple[torch.Tensor, ...]]:
    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, size, size, generator=_generator(seed)),)

    return inputs


# -- torchvision --------------------------------------------------------------------------------
def torchvision_names() -> list[str]:
    """Every classification model torchvision has."""
    tv = import_torchvision()
    return sorted(tv.models.list_models(module=tv.models))


def torchvision_model(name: str, size: int | None = None) -> ZooModel:
    tv = import_torchvision()
    options = TORCHVISION_OPTIONS.get(name, {})
    size = size or TORCHVISION_SIZES.get(name) or options.get("image_size", IMAGE)
    return ZooModel("torchvision", name, "classification",
                    seeded(lambda: tv.models.get_model(name, weights=None, **options)),
                    image_inputs(size), {"input": [1, 3, size, size], **options})


# -- timm ---------------------------------------------------------------------------------------
def count_parameters(build: Callable[..., nn.Module]) -> int:
    """Parameters of `build()`, built on the meta device (no memory, no init), or for real
    where a constructor needs real tensors (e.g. it computes widths with torch ops)."""
    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # noqa: BLE001 - some constructors read tensor values; build for real
        model = build()
    return sum(p.numel() for p in model.parameters())


def timm_sample(count: int = TIMM_COUNT, seed: int = TIMM_SEED,
                max_params: int = TIMM_MAX_PARAMS) -> dict[str, Any]:
    """A seeded sample of timm's models with under `max_params` parameters: the list shuffled
    by `random.Random(seed)`, taken in order. Returns the names, their parameter counts,
    and the candidates passed over (too large, or not buildable, with the reason)."""
    timm = import_timm()
    names = sorted(timm.list_models())
    random.Random(seed).shuffle(names)
    chosen: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if len(chosen) == count:
            break
        try:
            params = count_parameters(lambda n=name: timm.create_model(n, pretrained=False))
        except Exception as e:  # noqa: BLE001 - recorded: the sample says what it passed over
            skipped[name] = f"{type(e).__name__}: {str(e).strip()[:200]}"
            continue
        if params < max_params:
            chosen[name] = params
        else:
            skipped[name] = f"{params / 1e6:.1f}M parameters"
    return {"seed": seed, "count": count, "max_params": max_params, "of": len(names),
            "names": list(chosen), "parameters": chosen, "passed_over": skipped}


def timm_model(name: str, size: int | None = None) -> ZooModel:
    """A timm model at `size`, or 64x64 (built for it where its input size is fixed), or
    its default size where eager fails at 64."""
    timm = import_timm()
    cfg = timm.models.get_pretrained_cfg(name)
    default = int((cfg.input_size if cfg is not None else (3, 224, 224))[-1])
    fixed = bool(cfg is not None and cfg.fixed_input_size)
    attempts: list[tuple[int, dict[str, Any]]] = []
    if size is not None:
        attempts.append((size, {"img_size": size} if fixed else {}))
    else:
        attempts.append((IMAGE, {"img_size": IMAGE} if fixed else {}))
        attempts.append((default, {}))
    errors = []
    for s, options in attempts:
        build = seeded(lambda o=options: timm.create_model(name, pretrained=False, **o))
        try:
            model = build()
            with torch.no_grad():
                model(*image_inputs(s)(0))
        except Exception as e:  # noqa: BLE001 - try the next size; all fail -> raise
            errors.append(f"{s}x{s}: {type(e).__name__}: {str(e).strip()[:200]}")
            continue
        return ZooModel("timm", name, "classification", lambda m=model: m, image_inputs(s),
                        {"input": [1, 3, s, s], **options,
                         **({"tried": errors} if errors else {})})
    raise RuntimeError(f"timm {name} runs at none of the sizes tried: {'; '.join(errors)}")


# -- transformers -------------------------------------------------------------------------------
class HFMain(nn.Module):
    """A transformers model called with positional tensors (`names` gives their keywords),
    returning its main tensor: `last_hidden_state`, or the first field of its output."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, tensors, strict=True)))
        main = getattr(out, "last_hidden_state", None)
        return main if main is not None else out[0]


VOCAB, SEQ, BATCH = 128, 16, 2


def text_inputs(names: tuple[str, ...], seq: int = SEQ) -> Callable[[int], tuple[torch.Tensor,
                                                                                   ...]]:
    """Token ids (batch 2) for each id input, and an attention mask whose second row ends
    in four pads."""
    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        g = _generator(seed)
        mask = torch.ones(BATCH, seq, dtype=torch.long)
        mask[1, seq - 4:] = 0
        return tuple(mask if n.endswith("attention_mask") and not n.startswith("decoder")
                     else torch.randint(0, VOCAB, (BATCH, seq), generator=g) for n in names)

    return inputs


def float_inputs(*shape: int) -> Callable[[int], tuple[torch.Tensor, ...]]:
    return lambda seed: (torch.randn(*shape, generator=_generator(seed)),)


@dataclass(frozen=True)
class HFSpec:
    """A transformers architecture: its config class and tiny options, the model class (the
    base model of the config, `AutoModel`, when None), its inputs and, for an encoder-decoder
    taken in part, the method giving that part (`get_encoder`)."""

    family: str
    config: str
    options: dict[str, Any]
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    model: str | None = None
    part: str | None = None
    example: Callable[[int], tuple[torch.Tensor, ...]] | None = None


_BERTISH = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}
_DECODER = {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
            "max_position_embeddings": 64, "use_cache": False}
_GPT = {"vocab_size": VOCAB, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64,
        "use_cache": False}
_SEQ2SEQ = {"vocab_size": VOCAB, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
            "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64, "max_position_embeddings": 64, "use_cache": False}
_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "image_size": 32, "patch_size": 8}
_AUDIO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 64, "conv_dim": (16, 16), "conv_kernel": (10, 3),
          "conv_stride": (5, 2), "num_conv_pos_embeddings": 16,
          "num_conv_pos_embedding_groups": 4, "vocab_size": 32}
_SEQ2SEQ_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids")

TRANSFORMERS: dict[str, HFSpec] = {
    # encoders
    "bert": HFSpec("encoder", "BertConfig", _BERTISH),
    "roberta": HFSpec("encoder", "RobertaConfig", {**_BERTISH, "pad_token_id": 1}),
    "distilbert": HFSpec("encoder", "DistilBertConfig", {
        "vocab_size": VOCAB, "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64,
        "max_position_embeddings": 64}),
    "albert": HFSpec("encoder", "AlbertConfig", {**_BERTISH, "embedding_size": 16}),
    "electra": HFSpec("encoder", "ElectraConfig", {**_BERTISH, "embedding_size": 16}),
    "deberta-v2": HFSpec("encoder", "DebertaV2Config", {**_BERTISH, "relative_attention": True,
                                                        "position_buckets": 16}),
    "mpnet": HFSpec("encoder", "MPNetConfig", _BERTISH),
    "modernbert": HFSpec("encoder", "ModernBertConfig", {
        "vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
        "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "cls_token_id": 1,
        "sep_token_id": 2, "global_attn_every_n_layers": 2, "local_attention": 8}),
    "mobilebert": HFSpec("encoder", "MobileBertConfig", {
        **_BERTISH, "embedding_size": 16, "intra_bottleneck_size": 16,
        "num_feedforward_networks": 1, "true_hidden_size": 16}),
    # decoders
    "gpt2": HFSpec("decoder", "GPT2Config", _GPT),
    "llama": HFSpec("decoder", "LlamaConfig", _DECODER),
    "mistral": HFSpec("decoder", "MistralConfig", {**_DECODER, "sliding_window": 8}),
    "qwen2": HFSpec("decoder", "Qwen2Config", _DECODER),
    "qwen3": HFSpec("decoder", "Qwen3Config", {**_DECODER, "head_dim": 16}),
    "phi": HFSpec("decoder", "PhiConfig", _DECODER),
    "phi3": HFSpec("decoder", "Phi3Config", {**_DECODER, "pad_token_id": 0}),
    "gemma": HFSpec("decoder", "GemmaConfig", {**_DECODER, "head_dim": 16}),
    "gemma2": HFSpec("decoder", "Gemma2Config", {**_DECODER, "head_dim": 16,
                                                 "sliding_window": 8}),
    "opt": HFSpec("decoder", "OPTConfig", {
        "vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "ffn_dim": 128, "max_position_embeddings": 64,
        "word_embed_proj_dim": 64, "use_cache": False}),
    "gpt-neox": HFSpec("decoder", "GPTNeoXConfig", {
        **_DECODER, "num_key_value_heads": None, "rotary_pct": 0.5}),
    "falcon": HFSpec("decoder", "FalconConfig", {
        "vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "use_cache": False}),
    "bloom": HFSpec("decoder", "BloomConfig", {"vocab_size": VOCAB, "hidden_size": 64,
                                              "n_layer": 2, "n_head": 4, "use_cache": False}),
    "gptj": HFSpec("decoder", "GPTJConfig", {**_GPT, "rotary_dim": 8}),
    "olmo2": HFSpec("decoder", "Olmo2Config", _DECODER),
    "stablelm": HFSpec("decoder", "StableLmConfig", _DECODER),
    "starcoder2": HFSpec("decoder", "Starcoder2Config", {**_DECODER, "sliding_window": 8}),
    # encoder-decoders
    "t5": HFSpec("encoder-decoder", "T5Config", {
        "vocab_size": VOCAB, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
        "num_heads": 4, "relative_attention_num_buckets": 8, "use_cache": False},
        _SEQ2SEQ_INPUTS),
    "bart": HFSpec("encoder-decoder", "BartConfig", _SEQ2SEQ, _SEQ2SEQ_INPUTS),
    "whisper-encoder": HFSpec("audio", "WhisperConfig", {
        "vocab_size": VOCAB, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
        "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64, "num_mel_bins": 16, "max_source_positions": 16,
        "max_target_positions": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        "decoder_start_token_id": 1, "use_cache": False},
        ("input_features",), part="get_encoder", example=float_inputs(1, 16, 32)),
    # vision
    "vit": HFSpec("vision", "ViTConfig", _VIT, ("pixel_values",),
                  example=float_inputs(1, 3, 32, 32)),
    "deit": HFSpec("vision", "DeiTConfig", _VIT, ("pixel_values",),
                   example=float_inputs(1, 3, 32, 32)),
    "beit": HFSpec("vision", "BeitConfig", {**_VIT, "use_relative_position_bias": True},
                   ("pixel_values",), example=float_inputs(1, 3, 32, 32)),
    "dinov2": HFSpec("vision", "Dinov2Config", _VIT, ("pixel_values",),
                     example=float_inputs(1, 3, 32, 32)),
    "swin": HFSpec("vision", "SwinConfig", {
        "image_size": 32, "patch_size": 2, "embed_dim": 16, "depths": [1, 1],
        "num_heads": [2, 4], "window_size": 4}, ("pixel_values",),
        example=float_inputs(1, 3, 32, 32)),
    "convnext": HFSpec("vision", "ConvNextConfig", {
        "hidden_sizes": [16, 32], "depths": [1, 1], "num_stages": 2}, ("pixel_values",),
        example=float_inputs(1, 3, 32, 32)),
    "resnet": HFSpec("vision", "ResNetConfig", {
        "embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1],
        "layer_type": "basic"}, ("pixel_values",), example=float_inputs(1, 3, 32, 32)),
    "mobilevit": HFSpec("vision", "MobileViTConfig", {
        "image_size": 64, "hidden_sizes": [32, 40, 48], "neck_hidden_sizes":
        [8, 8, 16, 16, 24, 32, 64], "num_attention_heads": 2}, ("pixel_values",),
        example=float_inputs(1, 3, 64, 64)),
    "efficientnet": HFSpec("vision", "EfficientNetConfig", {
        "image_size": 32, "width_coefficient": 0.25, "depth_coefficient": 0.25,
        "hidden_dim": 320}, ("pixel_values",), example=float_inputs(1, 3, 32, 32)),
    "segformer": HFSpec("vision", "SegformerConfig", {
        "num_encoder_blocks": 2, "depths": [1, 1], "sr_ratios": [2, 1],
        "hidden_sizes": [16, 32], "num_attention_heads": [1, 2], "patch_sizes": [7, 3],
        "strides": [4, 2], "mlp_ratios": [2, 2], "decoder_hidden_size": 32},
        ("pixel_values",), example=float_inputs(1, 3, 32, 32)),
    # audio
    "wav2vec2": HFSpec("audio", "Wav2Vec2Config", _AUDIO, ("input_values",),
                       example=float_inputs(1, 800)),
    "hubert": HFSpec("audio", "HubertConfig", _AUDIO, ("input_values",),
                     example=float_inputs(1, 800)),
    "wavlm": HFSpec("audio", "WavLMConfig", {**_AUDIO, "num_buckets": 16},
                    ("input_values",), example=float_inputs(1, 800)),
    "audio-spectrogram-transformer": HFSpec("audio", "ASTConfig", {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "patch_size": 8, "frequency_stride": 8, "time_stride": 8,
        "max_length": 32, "num_mel_bins": 16}, ("input_values",),
        example=float_inputs(1, 32, 16)),
}


def transformers_names() -> list[str]:
    return list(TRANSFORMERS)


def transformers_model(name: str) -> ZooModel:
    import transformers

    spec = TRANSFORMERS[name]
    config = getattr(transformers, spec.config)(**spec.options)

    def build() -> nn.Module:
        if spec.model is not None:
            model = getattr(transformers, spec.model)(config)
        else:
            model = transformers.AutoModel.from_config(config)
        if spec.part is not None:
            model = getattr(model, spec.part)()
        return HFMain(model, spec.inputs)

    inputs = spec.example or text_inputs(spec.inputs)
    return ZooModel("transformers", name, spec.family, seeded(build), inputs,
                    {"config": spec.config, "input": [list(x.shape) for x in inputs(0)]})


# -- any zoo ------------------------------------------------------------------------------------
def zoo_model(zoo: str, name: str) -> ZooModel:
    """The sweep's model `name` of `zoo`."""
    if zoo == "torchvision":
        return torchvision_model(name)
    if zoo == "timm":
        return timm_model(name)
    if zoo == "transformers":
        return transformers_model(name)
    raise ValueError(f"unknown zoo {zoo!r}: one of {', '.join(ZOOS)}")
