#!/usr/bin/env python3
"""torch_peers.py — PyTorch timings of the CUDA backend's hot ops at Qwen-Image
sizes, as peers for docs/perf/cuda.md (run by scripts/gpu-check.sh --peers on
the GPU machine, where PyTorch is installed). Same shapes as tests/cuda/
cuda_check.c; times are medians of CUDA-event timings after warm-up."""
import torch
import torch.nn.functional as F


def bench(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    dev = "cuda"
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    s, h, d = 6921 + 32, 24, 128
    q, k, v = (torch.randn(1, h, s, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
    flops = 4.0 * s * s * d * h
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for name, be in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
        try:
            with sdpa_kernel(be):
                ms = bench(lambda: F.scaled_dot_product_attention(q, k, v))
            print(f"| torch sdpa {name:9s} | S={s} {h}x{d} bf16 | {ms:8.3f} ms | {flops / ms / 1e9:6.0f} TFLOP/s |")
        except Exception as e:  # backend not available for this build
            print(f"| torch sdpa {name:9s} | unavailable: {str(e)[:60]} |")
    x = torch.randn(6921, 3072, device=dev, dtype=torch.bfloat16)
    w = torch.randn(12288, 3072, device=dev, dtype=torch.bfloat16)
    ms = bench(lambda: F.linear(x, w))
    print(f"| torch linear bf16 | 6921x3072 . 3072x12288 | {ms:8.3f} ms | {2.0 * 6921 * 3072 * 12288 / ms / 1e9:6.0f} TFLOP/s |")
    xc = torch.randn(1, 96, 1328, 1328, device=dev, dtype=torch.bfloat16)
    wc = torch.randn(96, 96, 3, 3, device=dev, dtype=torch.bfloat16)
    torch.backends.cudnn.benchmark = True
    ms = bench(lambda: F.conv2d(xc, wc, padding=1))
    print(f"| torch conv2d bf16 | 96->96 3x3 1328x1328 | {ms:8.3f} ms | {2.0 * 96 * 96 * 9 * 1328 * 1328 / ms / 1e9:6.0f} TFLOP/s |")


if __name__ == "__main__":
    main()
