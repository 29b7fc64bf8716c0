"""qwen-vl transformers engine throughput: images judged per second at batch 1 vs batch 8.

    python bench/qwenvl_gpu.py            # CUDA: a Qwen2.5-VL-7B-sized model with random weights, 1024x1024 inputs
    python bench/qwenvl_gpu.py --tiny     # CPU smoke run: the tiny model, small inputs (not a performance figure)

Random weights run exactly as fast as the real checkpoint (same shapes, same kernels), so this
measures the engine honestly without downloading 16 GB. The 7B-sized model is built in memory on
the GPU (bf16) and handed to the engine; ``--tiny`` instead writes the tiny model to disk and loads
it through ``from_pretrained``. Requests are the judge's t2i rubric with one image each; every
answer is ``--max-tokens`` long at most (random weights rarely stop early). Prints one line per
batch size and a summary line: images/s at batch 1 and 8, and the speedup. Not run in CI.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def make_requests(count: int, side: int) -> list:
    from PIL import Image
    from pixmill.rubrics import load_rubric
    from pixmill.serving import ChatRequest

    rubric = load_rubric("t2i")
    requests = []
    for i in range(count):
        image = Image.effect_noise((side, side), 30 + i).convert("RGB")
        parts = [{"type": "text", "text": "Generated image:"}, {"type": "image", "image": image},
                 {"type": "text", "text": rubric.render(f"a photo of test subject number {i}")}]
        requests.append(ChatRequest([{"role": "user", "content": parts}], temperature=0.0))
    return requests


def build_engine(tiny: bool, max_tokens: int, max_pixels: int):
    import torch
    from pixmill_qwenvl.engines.hf import TransformersEngine, image_only_processor_class
    from pixmill_qwenvl.tiny import (
        build_config,
        build_image_processor,
        build_model,
        build_tiny_qwen_vl,
        build_tokenizer,
    )

    config = {"min_pixels": 4 * 28 * 28, "max_pixels": max_pixels, "max_tokens": max_tokens, "top_p": 1.0,
              "dtype": "auto", "device": None}
    if tiny:
        folder = build_tiny_qwen_vl(Path(tempfile.mkdtemp(prefix="qwenvl-tiny-")) / "model")
        engine = TransformersEngine({**config, "model": str(folder), "device": "cpu"})
    else:
        tokenizer = build_tokenizer()
        started = time.perf_counter()
        model = build_model(build_config(tokenizer, "7b"), device="cuda", dtype=torch.bfloat16)
        params = sum(p.numel() for p in model.parameters()) / 1e9
        print(f"built a Qwen2.5-VL-7B-sized model ({params:.2f}B parameters, bf16) in {time.perf_counter() - started:.1f}s")
        processor = image_only_processor_class()(image_processor=build_image_processor(), tokenizer=tokenizer,
                                                 chat_template=tokenizer.chat_template)
        engine = TransformersEngine({**config, "model": "random-7b"}, model=model, processor=processor)
    engine.load()
    return engine


def measure(engine, requests: list, batch: int) -> tuple[float, int]:
    """Seconds to answer every request in batches of ``batch``, and the tokens generated."""
    import torch

    tokens = 0
    cuda = torch.cuda.is_available() and str(engine.device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(requests), batch):
        for answer in engine.chat(requests[i:i + batch]):
            if isinstance(answer, Exception):
                raise answer
            tokens += answer.params["tokens"]
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny model and small inputs (a smoke run)")
    parser.add_argument("--images", type=int, default=None, help="images per batch size (default 32; --tiny: 8)")
    parser.add_argument("--side", type=int, default=None, help="input side in pixels (default 1024; --tiny: 224)")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest answer")
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28, help="the serving's --max-pixels")
    args = parser.parse_args()

    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --tiny for the CPU smoke run")
    if args.tiny:
        # A model this small is all per-op overhead: torch's CPU thread pool only adds spin-waiting
        # (10x slower on a busy 2-core machine), so the smoke run uses one thread.
        torch.set_num_threads(1)
    count = args.images or (8 if args.tiny else 32)
    side = args.side or (224 if args.tiny else 1024)
    engine = build_engine(args.tiny, args.max_tokens, args.max_pixels)
    requests = make_requests(count, side)
    measure(engine, requests[:2], 2)  # warm-up: kernels, allocator, processor caches
    device = torch.cuda.get_device_name() if not args.tiny else "cpu"
    rates = {}
    for batch in (1, 8):
        seconds, tokens = measure(engine, requests, batch)
        rates[batch] = count / seconds
        print(f"batch {batch}: {count} images ({side}x{side}) in {seconds:.2f}s = {rates[batch]:.2f} images/s, "
              f"{tokens / seconds:.0f} generated tokens/s")
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else ""
    print(f"qwen-vl transformers ({'tiny' if args.tiny else '7B-sized'}, {device}): batch 1 {rates[1]:.2f} images/s, "
          f"batch 8 {rates[8]:.2f} images/s, speedup {rates[8] / rates[1]:.2f}x{peak}")


if __name__ == "__main__":
    main()
