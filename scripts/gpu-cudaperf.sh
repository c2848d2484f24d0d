#!/usr/bin/env bash
# gpu-cudaperf.sh DIR OUT — the cudaperf work checked and measured in one short GPU lease
# (docs/perf/cuda.md). DIR: an unpacked bundle with mold, test_dit, test_vae, test_cuda_ops,
# cuda_check, and this script (run from the repository root, cuBLASLt on LD_LIBRARY_PATH: scripts/gpu-env.sh).
#   1. test_cuda_ops (every op vs the CPU backend; the new kernels and their predecessors);
#      when the attention or conv group fails, the rest runs on the predecessor kernel
#      (MOLD_CUDA_ATTN_VARIANT=4 / MOLD_CUDA_CONV_VARIANT=2), which the same group verifies;
#      when the flash4 (wgmma) group passes, the rest runs on flash4 (variant 6);
#   2. cuda_check --fast (attention and conv rows, new vs previous kernel);
#   3. synth q4_0 transformer + q8_0 text encoder; mold bench 1328 (123 words) and 1024
#      (27 words); two warm `mold run` 1328 x 1 step;
#   4. scripts/gpu-golden.sh (module goldens, pipelines, compute-sanitizer memcheck).
set -uo pipefail
G=$1 OUT=$2
ROOT=$(pwd) # the repository root (the call runs there)
T=$G/tools
mkdir -p "$T" && mv "$G/test_cuda_ops" "$G/cuda_check" "$T/" 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
echo "== 1. test_cuda_ops"
timeout 100 "$T/test_cuda_ops" >"$OUT/ops.log" 2>&1
rc=$?
echo "test_cuda_ops rc=$rc"
grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|differ from|rel [0-9.e-]+ > " "$OUT/ops.log" | tail -14
[ $rc = 0 ] || for grp in test_attention test_conv2d test_weight_hold; do
  MOLD_CUDA_TEST_FILTER=$grp timeout 60 "$T/test_cuda_ops" >"/tmp/ops-$grp.log" 2>&1 && continue
  cp "/tmp/ops-$grp.log" "$OUT/"
  echo "FAIL $grp"; grep -E "rel|FAIL|error" "/tmp/ops-$grp.log" | tail -6
  [ $grp = test_attention ] && export MOLD_CUDA_ATTN_VARIANT=4
  [ $grp = test_conv2d ] && export MOLD_CUDA_CONV_VARIANT=2
done
# flash4 (wgmma) is taken for the rest only when its own group passes
if [ -z "${MOLD_CUDA_ATTN_VARIANT:-}" ] && MOLD_CUDA_TEST_FILTER=test_attention_flash4 \
    timeout 60 "$T/test_cuda_ops" >/tmp/ops-f4.log 2>&1; then
  export MOLD_CUDA_ATTN_VARIANT=6
else
  cp /tmp/ops-f4.log "$OUT/" 2>/dev/null; grep -E "rel|FAIL|error" /tmp/ops-f4.log | tail -6
fi
echo "kernels: attention variant ${MOLD_CUDA_ATTN_VARIANT:-0}, conv variant ${MOLD_CUDA_CONV_VARIANT:-0}"
echo "== 2. cuda_check --fast"
timeout 90 "$T/cuda_check" --fast >"$OUT/check.log" 2>&1
echo "cuda_check rc=$?"
grep -E "^\| (attention|conv2d)|cuda_check:" "$OUT/check.log"
echo "== 3. bench q4_0 + q8_0"
W=/tmp/cpw && rm -rf $W && mkdir -p $W
t0=$(date +%s)
"$G/mold" synth --preset qwen-image-2512 --transformer q4_0 --text-encoder q8_0 \
    --tokenizer "$G/tokenizer-qwen2_5" $W/m >"$W/synth.log" 2>&1 || tail -5 "$W/synth.log"
cat $W/m/transformer/* $W/m/text_encoder/* >/dev/null
echo "synth: $(( $(date +%s) - t0 )) s"
for run in "1328 123" "1024 27"; do
  set -- $run
  timeout 75 "$G/mold" bench $W/m --device cuda --width $1 --height $1 --text-tokens 32 \
      --encode-words $2 --repeats 3 >"$W/bench-$1.log" 2>&1
  echo "bench $1 rc=$?"; grep -o '"hold":"[a-z0-9]*"' "$W/bench-$1.log" | head -3 | tr '\n' ' '; echo
  tail -1 "$W/bench-$1.log"
done
for rep in 1 2; do
  t1=$(date +%s%N)
  timeout 45 "$G/mold" run $W/m "a lighthouse on a cliff at night" --device cuda --width 1328 \
      --height 1328 --steps 1 --seed 1 -o $W/run.png >"$W/run$rep.log" 2>&1
  echo "mold run 1328 1 step rc=$? wall $(( ($(date +%s%N) - t1) / 1000000 )) ms"
done
tar czf "$OUT/bench.tgz" -C $W $(cd $W && ls *.log) 2>/dev/null; rm -rf $W/m
echo "== 4. goldens"
mkdir -p /tmp/gold
timeout 120 bash "$ROOT/scripts/gpu-golden.sh" "$G" /tmp/gold >"$OUT/golden.log" 2>&1
echo "golden rc=$?"
grep -E "^ok|^FAIL|worst|image_u8|ERROR SUMMARY" "$OUT/golden.log" | head -20
tar czf "$OUT/gold.tgz" -C /tmp gold 2>/dev/null
