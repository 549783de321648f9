#!/usr/bin/env bash
# The GPU benchmark runs behind README's numbers, one job per argument, each writing $OUT/<job>.json and a log.
# On the device machine after `source ~/gpu-stage/env.sh` (see design.md): bash experiments/bench/run_gpu.sh JOB...
# Jobs: attention serial64 serial128 serial128x16 serial128long seriallong seriallong128 seriallong1k segments decode steptime gputests
#       stockarms stockdecode stocksteps stockshapes_smollm2 stockshapes_qwen stocklong stocklong_rest pagedsmall serial256 serial512 (issue 15: the stock transformers/TRL arms; see README.md) memory
set -u
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
B=experiments/bench
for job in "$@"; do
  start=$(date +%s)
  case $job in
    serial64) python3 $B/serial_exits.py --prompts 64 --out "$OUT/$job.json" ;;
    serial128) python3 $B/serial_exits.py --prompts 128 --phases --out "$OUT/$job.json" ;;
    serial128x16) python3 $B/serial_exits.py --prompts 128 --max-tokens 2048 --answer-max-tokens 128 --repeats 2 \
      --arms parallel serial --phases --out "$OUT/$job.json" ;;
    serial128long) python3 $B/serial_exits.py --prompts 128 --max-tokens 2048 --answer-max-tokens 256 --repeats 2 --max-batch-size 576 \
      --out "$OUT/$job.json" ;;
    seriallong) python3 $B/serial_exits.py --model qwen2.5-1.5b --prompts 64 --max-tokens 2048 --answer-max-tokens 128 \
      --repeats 2 --phases --out "$OUT/$job.json" ;;
    seriallong128) python3 $B/serial_exits.py --model qwen2.5-1.5b --prompts 128 --max-tokens 2048 \
      --answer-max-tokens 128 --repeats 2 --arms parallel serial --phases --out "$OUT/$job.json" ;;
    seriallong1k) python3 $B/serial_exits.py --model qwen2.5-1.5b --prompts 64 --max-tokens 1024 --answer-max-tokens 64 \
      --repeats 2 --phases --out "$OUT/$job.json" ;;
    attention) python3 $B/decode_attention.py --out "$OUT/$job.json" ;;
    segments) python3 $B/segments.py --phases --out "$OUT/$job.json" ;;
    segments48) python3 $B/segments.py --segments 4 8 --phases --out "$OUT/$job.json" ;;
    decode) python3 $B/decode_throughput.py --models smollm2-135m-instruct --batch 256 --new-tokens 512 \
      --modes stock compiled --out "$OUT/$job.json" ;;
    steptime) python3 $B/step_time.py --steps 3 --out "$OUT/$job.json" ;;
    # issue 15. stockarms: <= 510 s in all (fits one 10-minute device command with gpu-stage's put2 before it):
    # decode at 256x512 for both models (engine compiled vs transformers static cache + compile vs paged, paged cut
    # at 45 s) under a 420 s timeout, then as many step-time arms as the rest allows (JSON rewritten after every arm)
    stockarms) t0=$(date +%s)
      # paged before hf_compiled: on 2026-12-06 (H100) paged failed with a mask-shape error when it ran after hf_compiled
      # on the same loaded model (experiments/bench/results/h100/)
      timeout 420 python3 $B/decode_throughput.py --models smollm2-135m-instruct qwen2.5-1.5b --shapes 256x512 \
        --modes compiled paged hf_compiled --arm-budget-s 45 --out "$OUT/${job}_decode.json"
      echo "decode: rc $? in $(( $(date +%s) - t0 )) s"
      timeout $(( 510 - ($(date +%s) - t0) )) python3 $B/step_time.py --variants stock_paged stock_static_compile grpo \
        --steps 1 --arm-budget-s 30 --out "$OUT/${job}_step_time.json" ;;
    stockdecode) python3 $B/decode_throughput.py --models smollm2-135m-instruct qwen2.5-1.5b --shapes 256x512 \
      --modes compiled hf_compiled paged stock hf_static --arm-budget-s 60 --out "$OUT/$job.json" ;;
    stocksteps) timeout 500 python3 $B/step_time.py --variants stock stock_static_compile stock_paged stock_static grpo s_grpo \
      grpo_lambda dler curriculum_budget ulorl format_length --steps 3 --arm-budget-s 60 --out "$OUT/$job.json" ;;
    # the other shapes of issue 15 item 1, one model per job so each fits a device command (paged gets 60 s per model:
    # its error row then bounds its tokens/s from above)
    # (256x512 is stockarms'; 1024x2048 only for SmolLM2: the 1.5B's static cache alone would be ~62 GB)
    stockshapes_smollm2|stockshapes_qwen) model=smollm2-135m-instruct; shapes="64x512 1024x512 256x2048 1024x2048"
      [ $job = stockshapes_qwen ] && model=qwen2.5-1.5b && shapes="64x512 1024x512 256x2048"
      timeout 330 python3 $B/decode_throughput.py --models $model --shapes $shapes \
        --modes compiled paged hf_compiled --arm-budget-s 120 --paged-budget-s 45 --out "$OUT/$job.json" ;;
    # what the 2026-12-06 H100 session did not reach: the stock arm at 2048 new tokens (one shape per model, both arms
    # in one run), and continuous batching where it can finish (it finished no request at 64x512 in 45 s)
    stocklong) timeout 560 python3 $B/decode_throughput.py --models smollm2-135m-instruct qwen2.5-1.5b --shapes 256x2048 \
      --modes hf_compiled compiled --out "$OUT/$job.json" ;;
    # the other 2048-token shapes, as the 2026-12-06 H100 run made them (SmolLM2's stock arm at 1024 x 2048 needs
    # ~400 s on its own: raise --arm-budget-s and run it alone to fill that cell)
    stocklong_rest) timeout 300 python3 $B/decode_throughput.py --models smollm2-135m-instruct --shapes 64x2048 1024x2048 \
        --modes hf_compiled compiled --arm-budget-s 200 --out "$OUT/stocklong_smollm2.json"
      timeout 250 python3 $B/decode_throughput.py --models qwen2.5-1.5b --shapes 64x2048 \
        --modes hf_compiled compiled --arm-budget-s 200 --out "$OUT/stocklong_qwen.json" ;;
    pagedsmall) timeout 560 python3 $B/decode_throughput.py --models smollm2-135m-instruct --shapes 16x64 64x128 \
      --modes paged hf_compiled compiled --arm-budget-s 150 --out "$OUT/$job.json" ;;
    # S-GRPO at 512/128 with more prompts per engine call (the trace call is latency-bound at 128 rows)
    serial256|serial512) n=${job#serial}; python3 $B/serial_exits.py --prompts $n --max-batch-size $(( n * 9 )) \
      --arms parallel serial --repeats 2 --phases --out "$OUT/$job.json" ;;
    # issue 15 item 4: 1,000 engine calls, S-GRPO's trace/exits pair alternating with a refill every 9th call (a third
    # batch bucket: one workspace evicted and rebuilt each time), weights synced every 2 calls
    memory) python3 $B/engine_memory.py --calls 1000 --shapes 128x64 1024x16 128x64 1024x16 128x64 1024x16 128x64 \
      1024x16 64x64 --out "$OUT/$job.json" ;;
    gputests) python3 -m pytest -p no:cacheprovider -q -m gpu tests/rollouts/test_decode_attention.py \
      tests/rollouts/test_hf_engine.py -o addopts="" ;;
    *) echo "unknown job $job" >&2; continue ;;
  esac > "$OUT/$job.log" 2>&1
  echo "$job: rc $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/jobs.txt"
  tail -n 3 "$OUT/$job.log"
done
