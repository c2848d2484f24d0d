"""Peer baseline: diffusers (PyTorch, bf16, SDPA) on full-size Qwen-Image shapes with random weights.
Prints one JSON line per measurement. Run on the GPU machine:
  PYTHONPATH=DIFFUSERS_SRC python3 scripts/perf/diffusers_baseline.py  (copied from the team's shared tools)
"""
import json, time, torch

torch.backends.cuda.matmul.allow_tf32 = True
dev = "cuda"


def timed(fn, warm=2, reps=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2], ts[0], ts[-1]


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    from diffusers import QwenImageTransformer2DModel, AutoencoderKLQwenImage
    emit(what="device", name=torch.cuda.get_device_name(), torch=torch.__version__)
    torch.manual_seed(0)
    cfg = dict(patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
               num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56))
    t0 = time.time()
    with torch.device(dev):
        torch.set_default_dtype(torch.bfloat16)
        dit = QwenImageTransformer2DModel(**cfg).eval()
        torch.set_default_dtype(torch.float32)
    torch.cuda.synchronize()
    emit(what="dit_init", seconds=time.time() - t0, params=sum(p.numel() for p in dit.parameters()),
         gpu_gib=torch.cuda.memory_allocated() / 2**30)
    for side in (1024, 1328):
        h = w = side // 16
        x = torch.randn(1, h * w, 64, device=dev, dtype=torch.bfloat16)
        for L in (32,):
            e = torch.randn(1, L, 3584, device=dev, dtype=torch.bfloat16)
            en = torch.randn(1, 6, 3584, device=dev, dtype=torch.bfloat16)
            ts = torch.tensor([0.7], device=dev, dtype=torch.bfloat16)

            def fwd(e=e):
                with torch.no_grad():
                    return dit(hidden_states=x, encoder_hidden_states=e, encoder_hidden_states_mask=None,
                               timestep=ts, img_shapes=[[(1, h, w)]], return_dict=False)[0]

            def step():
                fwd(e); fwd(en)

            torch.cuda.reset_peak_memory_stats()
            med, lo, hi = timed(fwd)
            emit(what="dit_forward", side=side, img_tokens=h * w, txt_tokens=L, median_ms=med, min_ms=lo, max_ms=hi,
                 peak_gib=torch.cuda.max_memory_allocated() / 2**30)
            med, lo, hi = timed(step, warm=1, reps=3)
            emit(what="dit_cfg_step", side=side, img_tokens=h * w, txt_tokens=[L, 6], median_ms=med, min_ms=lo, max_ms=hi)
    del dit
    torch.cuda.empty_cache()

    with torch.device(dev):
        vae = AutoencoderKLQwenImage(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True]).to(torch.bfloat16).eval()
    for side in (1024, 1328):
        z = torch.randn(1, 16, 1, side // 8, side // 8, device=dev, dtype=torch.bfloat16)

        def dec():
            with torch.no_grad():
                return vae.decode(z, return_dict=False)[0]

        torch.cuda.reset_peak_memory_stats()
        med, lo, hi = timed(dec, warm=1, reps=3)
        emit(what="vae_decode", side=side, median_ms=med, min_ms=lo, max_ms=hi, peak_gib=torch.cuda.max_memory_allocated() / 2**30)
    del vae
    torch.cuda.empty_cache()

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    tc = Qwen2_5_VLConfig(text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                           num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                           rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=128000,
                                           rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"}),
                          vision_config=dict(depth=1, hidden_size=64, intermediate_size=64, num_heads=2, out_hidden_size=3584),
                          hidden_size=3584, vocab_size=152064)
    with torch.device(dev):
        torch.set_default_dtype(torch.bfloat16)
        te = Qwen2_5_VLForConditionalGeneration(tc).eval()
        torch.set_default_dtype(torch.float32)
    for T in (66, 162):
        ids = torch.randint(0, 150000, (1, T), device=dev)
        am = torch.ones_like(ids)

        def enc():
            with torch.no_grad():
                return te(input_ids=ids, attention_mask=am, output_hidden_states=True).hidden_states[-1]

        med, lo, hi = timed(enc)
        emit(what="text_encode", tokens=T, median_ms=med, min_ms=lo, max_ms=hi)
    emit(what="done")


if __name__ == "__main__":
    main()
