"""The most tokens/s a batch could reach on a GPU: prefill at peak compute, each decode step at peak bandwidth.

    python bench/roofline.py --shape llava-1.5-7b --rows 32 --prompt-tokens 600 --new-tokens 64 --gpu h100-sxm
                             [--cache-length 768] [--measured 1256]

A LLaVA of a real shape (models/tiny.py) serving `rows` requests at once, each with one image (its tokens are
part of `--prompt-tokens`) and `--new-tokens` new tokens. The bound is the time of two phases at the GPU's
datasheet peaks, with nothing else in the way:
- prefill: every prompt token through the text model (its matrix weights, and causal attention over the
  prompt), every image through the vision tower and projector, logits for the last position only;
- decoding, per step: the larger of compute and memory traffic, where the traffic is every text weight once
  plus each row's key/value cache read over its filled length (an engine's paged attention), or over
  `--cache-length` positions (a static cache, as `hfvlm` `static` and `graphs` decoding keep).
Real kernels reach a fraction of either peak, so a measured rate is best read as a share of this bound.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from common import REPO  # noqa: F401  (puts the repository on the path)

from vlmguard_eval.models.tiny import CLIP_L14_336, TEXT_SHAPES

VOCAB = 32064  # LLaVA-1.5's vocabulary (models/tiny.py builds every shape with it)


@dataclass(frozen=True)
class Gpu:
    dense_bf16_tflops: float
    bandwidth_tb_s: float


# NVIDIA's datasheets: dense bf16 tensor throughput (half the "with sparsity" figure) and HBM bandwidth
GPUS = {
    "h100-sxm": Gpu(989.0, 3.35),  # H100 SXM5 80GB (HBM3)
    "h100-pcie": Gpu(756.0, 2.0),  # H100 PCIe 80GB
    "h200": Gpu(989.0, 4.8),  # H200 SXM 141GB (HBM3e)
}


def gpu_from_name(name: str) -> str | None:
    """The GPUS key for a CUDA device name (torch.cuda.get_device_name), if we hold its datasheet figures."""
    if "H200" in name:
        return "h200"
    if "H100" in name:
        return "h100-pcie" if "PCIe" in name else "h100-sxm"
    return None


def _text_matrix_params(text: dict) -> tuple[int, int]:
    """Parameters of one decoder layer's matrices, and of the output head."""
    hidden, heads = text["hidden_size"], text["num_attention_heads"]
    head_dim = hidden // heads
    attention = hidden * head_dim * (2 * heads + 2 * text["num_key_value_heads"])  # q, o; k, v
    return attention + 3 * hidden * text["intermediate_size"], hidden * VOCAB


def bound_tokens_per_s(
    shape: str, rows: int, prompt_tokens: int, new_tokens: int, gpu: Gpu, cache_length: int | None = None
) -> tuple[float, float, float]:
    """(tokens/s, prefill seconds, decoding seconds) at the bound, with bf16 weights and cache."""
    text = TEXT_SHAPES[shape]
    layers, hidden = text["num_hidden_layers"], text["hidden_size"]
    layer_params, head_params = _text_matrix_params(text)
    kv_width = 2 * text["num_key_value_heads"] * (hidden // text["num_attention_heads"])  # k and v, per layer
    vision = CLIP_L14_336
    patches = (vision["image_size"] // vision["patch_size"]) ** 2 + 1
    vision_params = vision["num_hidden_layers"] * (
        4 * vision["hidden_size"] ** 2 + 2 * vision["hidden_size"] * vision["intermediate_size"]
    )
    projector_params = vision["hidden_size"] * hidden + hidden * hidden

    flops, bytes_per_param = 1e12 * gpu.dense_bf16_tflops, 2
    prefill = rows * (
        2 * layers * layer_params * prompt_tokens
        + 2 * layers * hidden * prompt_tokens**2  # q.k and attention.v, causal (half of the square)
        + 2 * head_params
        + 2 * vision_params * patches
        + 2 * projector_params * (patches - 1)
    )
    decoding = 0.0
    for step in range(1, new_tokens):  # prefill's logits give the first new token; each step adds one more
        context = cache_length or prompt_tokens + step
        traffic = bytes_per_param * (layers * layer_params + head_params + rows * layers * kv_width * context)
        compute = rows * (2 * layers * layer_params + 2 * head_params + 4 * layers * hidden * context)
        decoding += max(traffic / (1e12 * gpu.bandwidth_tb_s), compute / flops)
    return rows * new_tokens / (prefill / flops + decoding), prefill / flops, decoding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="llava-1.5-7b", choices=sorted(TEXT_SHAPES))
    parser.add_argument("--rows", type=int, default=32, help="requests decoded together")
    parser.add_argument("--prompt-tokens", type=int, default=600, help="per request, its image tokens included")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gpu", default="h100-sxm", choices=sorted(GPUS))
    parser.add_argument("--cache-length", type=int, default=None, help="positions a static cache reads per step")
    parser.add_argument("--measured", type=float, default=None, help="a measured tokens/s, to show as a share")
    args = parser.parse_args()
    rate, prefill, decoding = bound_tokens_per_s(
        args.shape, args.rows, args.prompt_tokens, args.new_tokens, GPUS[args.gpu], args.cache_length
    )
    cache = f"a static cache of {args.cache_length}" if args.cache_length else "the filled cache"
    print(
        f"{args.shape}, {args.rows} rows x ({args.prompt_tokens} prompt + {args.new_tokens} new) tokens on "
        f"{args.gpu}, attention over {cache}: bound {rate:,.0f} tokens/s "
        f"(prefill {prefill:.3f} s + decoding {decoding:.3f} s)"
    )
    if args.measured:
        print(f"measured {args.measured:,.0f} tokens/s: {args.measured / rate:.0%} of the bound")


if __name__ == "__main__":
    main()
