#!/usr/bin/env bash
# The GPU paths of cityseg, checked on a machine with NVIDIA GPUs, offline, in about 5 minutes:
# training (fp16, bf16, channels_last, each encoder family, weight average, torch.compile,
# SyncBatchNorm and NCCL on several GPUs, exact resume after Ctrl-C), evaluate (whole, slide, TTA),
# predict, ONNX export and onnxruntime on CUDA, the training speed of two recipes, and the cases
# only a GPU shows. Prints one table: case, PASS / FAIL / SKIP, seconds, planned seconds; exit
# status 1 if any case failed. A case that did not run because the time ran out is a FAIL.
#
#   scripts/gpu_check.sh [--quick] [--benchmarks] [--list] [WORK_DIR]
#
# --quick runs the cases that matter most (about half the time); --benchmarks adds the smoke forms
# of the benchmarks; --list prints each case, its planned seconds and what it proves, and exits.
# Each case has a plan (seconds on one modern GPU; the plans of the default list add up to under
# 300 s on one GPU) and a limit of 3 x its plan + 20 s. Cases needing 2 GPUs are SKIP on one, with
# the reason.
#
# Needs a Python where torch (a CUDA build), onnx, onnxruntime and cityseg's other dependencies
# import; the sources come from this repository (PYTHONPATH=src), so nothing is installed and no
# network is used. The first case says what is missing. Settings (environment): PYTHON (default
# python3, else python), BUDGET (seconds for all the cases, 450: a case that cannot start within
# it FAILS, "not run"). WORK_DIR (default: a new folder under /tmp, its path without spaces) holds
# the data, the runs and each case's log, logs/<case>.log.

set -uo pipefail

cityseg() { "$PYTHON" -m cityseg "$@"; }
torchrun() { "$PYTHON" -m torch.distributed.run --standalone "$@"; }
helper() { "$PYTHON" "$REPO/scripts/gpu_check.py" "$@"; }

# out FILE COMMAND...: run COMMAND, its output into FILE and the case's log; its exit status.
out() {
    local file=$1 status=0
    shift
    "$@" >"$file" 2>&1 || status=$?
    cat "$file"
    return "$status"
}

# expect TEXT FILE: FILE holds TEXT.
expect() { grep -qF -- "$1" "$2" || { echo "CHECK FAILED: '$1' not in $2"; return 1; }; }

# bench NAME: a benchmark's smoke form on the GPU prints its table and ratios, no row failed.
bench() {
    local name=$1 table="$WORK/logs/$1.txt" status=0
    "$PYTHON" "$REPO/benchmarks/$name.py" --smoke --device cuda >"$table" 2>"$table.err" ||
        status=$?
    cat "$table" "$table.err"
    test "$status" = 0
    expect "Ratios (same run):" "$table"
    expect "|---" "$table"
    if grep -q "failed" "$table"; then echo "CHECK FAILED: a row failed"; return 1; fi
}

# need_gpus N: exit the case as skipped (77) with the reason when fewer than N GPUs are visible.
need_gpus() {
    if [ "$GPUS" -lt "$1" ]; then
        echo "skipped: needs $1 GPUs, $GPUS visible"
        exit 77
    fi
}

# encoder_case NAME WEIGHTS: the U-Net on encoder NAME (WEIGHTS: imagenet or a file) trained in
# fp16, then bf16, channels_last, its encoder frozen in the first epoch.
encoder_case() {
    local name=$1 weights=$2 precision log run
    for precision in fp16 bf16; do
        run="$WORK/run_${name}_$precision" log="$WORK/logs/encoder_${name}_$precision.txt"
        out "$log" cityseg train --out "$run" $COMMON model.encoder="$name" \
            model.encoder_weights="$weights" train.precision=$precision train.channels_last=true \
            train.freeze_encoder_epochs=1
        expect "encoder $name: " "$log"
        expect "precision $precision (autocast" "$log"
        expect "| channels_last |" "$log"
        expect "epoch 2/2 |" "$log"
        helper checkpoint-precision "$run/checkpoint_last.pt" $precision
    done
}

# evaluate_case NAME OPTIONS...: cityseg evaluate of the bf16 run on the GPU.
evaluate_case() {
    local name=$1
    shift
    out "$WORK/logs/$name.txt" cityseg evaluate "$WORK/run_bf16/checkpoint_best.pt" \
        --data "$WORK/data" --out "$WORK/$name" --device cuda --no-progress "$@"
    expect "on cuda" "$WORK/logs/$name.txt"
}

# --- the cases: each runs in a bash of its own, with set -e -f (the first failing command fails
# it; no globbing of the [H,W] overrides); exit status 77 means skipped ----------------------------

case_generate_data() {
    set -ef
    out "$WORK/logs/generate.txt" cityseg data generate "$WORK/data" --train 32 --val 8 --test 0 \
        --size 128x256 --no-color
    test "$(find "$WORK/data/leftImg8bit/val" -name '*.png' | wc -l)" = 8
}

case_train_fp16_channels_last() {
    set -ef
    local log="$WORK/logs/train_fp16.txt"
    out "$log" cityseg train --out "$WORK/run_fp16" $COMMON train.precision=fp16 \
        train.channels_last=true
    expect "precision fp16 (autocast, grad scaler) | channels_last" "$log"
    expect "epoch 2/2 |" "$log"
    helper checkpoint-precision "$WORK/run_fp16/checkpoint_last.pt" fp16
}

case_train_bf16_contiguous() {
    set -ef
    local log="$WORK/logs/train_bf16.txt"
    out "$log" cityseg train --out "$WORK/run_bf16" $COMMON train.precision=bf16 \
        train.channels_last=false
    expect "precision bf16 (autocast) | contiguous" "$log"
    expect "epoch 2/2 |" "$log"
    helper checkpoint-precision "$WORK/run_bf16/checkpoint_last.pt" bf16
}

case_encoder_efficientnet_lite0() { set -ef; encoder_case efficientnet-lite0 imagenet; }

case_encoder_resnet18() {
    set -ef
    helper encoder-weights resnet18 "$WORK/resnet18.pth"
    encoder_case resnet18 "$WORK/resnet18.pth"
}

case_encoder_mobilenet_v2() {
    set -ef
    helper encoder-weights mobilenet_v2 "$WORK/mobilenet_v2.pth"
    encoder_case mobilenet_v2 "$WORK/mobilenet_v2.pth"
}

case_train_ema() {
    set -ef
    local log="$WORK/logs/train_ema.txt"
    out "$log" cityseg train --out "$WORK/run_ema" $COMMON train.ema_decay=0.9 \
        train.precision=bf16
    expect "epoch 2/2 |" "$log"
    helper averaged "$WORK/run_ema/checkpoint_last.pt"
}

case_train_compile() {
    set -ef
    local log="$WORK/logs/train_compile.txt"
    out "$log" cityseg train --out "$WORK/run_compile" $COMMON train.compile=true \
        train.precision=bf16 train.channels_last=true
    expect "precision bf16 (autocast) | channels_last" "$log"
    expect "epoch 2/2 |" "$log"
}

# SyncBatchNorm on 2 GPUs (NCCL), bf16 where the GPU has it, one training image unreadable and 1
# image per process: the process holding it takes the blank step, which must make SyncBatchNorm's
# collectives too, its statistics of the others' type (a hang fails after CITYSEG_DIST_TIMEOUT=60).
case_sync_bn_two_gpus() {
    set -ef
    need_gpus 2
    local image log="$WORK/logs/sync_bn.txt"
    rm -rf "$WORK/data_damaged"
    cp -r "$WORK/data" "$WORK/data_damaged"
    image=$(find "$WORK/data_damaged/leftImg8bit/train" -name '*.png' | sort | head -n 1)
    head -c 100 "$image" >"$WORK/truncated.png"  # in the script's own folder, whatever $image is
    mv "$WORK/truncated.png" "$image"
    CITYSEG_DIST_TIMEOUT=60 out "$log" torchrun --nproc_per_node 2 -m cityseg train \
        --out "$WORK/run_sync_bn" $COMMON data.root="$WORK/data_damaged" train.batch_size=2 \
        train.sync_bn=true data.skip_bad_samples=true
    expect "| 2 processes" "$log"
    expect "warning: skipped: " "$log"
    expect "epoch 2/2 |" "$log"
    if grep -q "sync_bn ignored" "$log"; then
        echo "CHECK FAILED: SyncBatchNorm not used"
        return 1
    fi
}

# One process per visible GPU, NCCL (its version line proves the backend).
case_nccl_every_gpu() {
    set -ef
    need_gpus 2
    local log="$WORK/logs/nccl.txt"
    NCCL_DEBUG=VERSION out "$log" torchrun --nproc_per_node "$GPUS" -m cityseg train \
        --out "$WORK/run_nccl" $COMMON train.batch_size=$((2 * GPUS))
    expect "NCCL version" "$log"
    expect "| $GPUS processes" "$log"
    expect "epoch 2/2 |" "$log"
}

# One process training on cuda:1 opens a CUDA context there and on no other GPU.
case_only_gpu_used() {
    set -ef
    need_gpus 2
    helper only-gpu-used 1 "$WORK/run_cuda1" $COMMON
}

# Ctrl-C in the middle of epoch 1, resumed: the weights of the run never interrupted, bit for bit.
case_resume_exact_after_ctrl_c() {
    set -ef
    out "$WORK/logs/straight.txt" cityseg train --out "$WORK/straight" $COMMON $EXACT
    local log="$WORK/logs/interrupted.txt" status=0 pid
    CITYSEG_TEST_FAULT=pause:step:2 "$PYTHON" -m cityseg train --out "$WORK/interrupted" \
        $COMMON $EXACT >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1200); do
        if grep -q "paused at step" "$log" || ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    kill -INT "$pid"
    wait "$pid" || status=$?
    cat "$log"
    if [ "$status" != 130 ]; then echo "CHECK FAILED: exit status $status, not 130"; return 1; fi
    expect "stopped by SIGINT in epoch 1" "$log"
    out "$WORK/logs/resumed.txt" cityseg train --resume "$WORK/interrupted"
    helper same-weights "$WORK/straight/checkpoint_last.pt" "$WORK/interrupted/checkpoint_last.pt"
}

case_evaluate_whole() {
    set -ef
    evaluate_case eval_whole --mode whole
    helper evaluation "$WORK/eval_whole/metrics.json"
}

case_evaluate_slide() {
    set -ef
    evaluate_case eval_slide --mode slide --tile 64x128 --tile-batch 2 --channels-last
    helper evaluation "$WORK/eval_slide/metrics.json"
}

case_evaluate_tta() {
    set -ef
    evaluate_case eval_tta --tta --precision bf16
    helper evaluation "$WORK/eval_tta/metrics.json"
}

case_predict() {
    set -ef
    out "$WORK/logs/predict.txt" cityseg predict "$WORK/run_bf16/checkpoint_best.pt" \
        "$WORK/data/leftImg8bit/val" --out "$WORK/predictions" --device cuda --no-progress
    expect "segmented 8 images" "$WORK/logs/predict.txt"
    test "$(find "$WORK/predictions" -name '*_labelIds.png' | wc -l)" = 8
}

case_export_onnx() {
    set -ef
    out "$WORK/logs/export.txt" cityseg export "$WORK/run_bf16/checkpoint_best.pt" \
        --out "$WORK/model.onnx"
    grep -Eq "argmax agreement (99\.9|100\.0)" "$WORK/logs/export.txt"
}

case_predict_onnx_cuda() {
    set -ef
    helper ort-available
    local log="$WORK/logs/predict_onnx.txt"
    out "$log" cityseg predict --onnx "$WORK/model.onnx" "$WORK/data/leftImg8bit/val" \
        --out "$WORK/predictions_onnx" --device cuda:0 --no-progress
    expect "segmented 8 images" "$log"
    if grep -q "could not start" "$log"; then echo "CHECK FAILED: CUDA did not start"; return 1; fi
}

# A run saved by a 4-GPU job (4 CUDA random states) resumes on this one GPU.
case_resume_with_fewer_gpus() {
    set -ef
    rm -rf "$WORK/fewer_gpus"
    cp -r "$WORK/run_fp16" "$WORK/fewer_gpus"
    helper widen-rng "$WORK/fewer_gpus/checkpoint_last.pt" 4
    out "$WORK/logs/fewer_gpus.txt" cityseg train --resume "$WORK/fewer_gpus" train.epochs=3
    expect "epoch 3/3 |" "$WORK/logs/fewer_gpus.txt"
}

# A float32 run (no gradient scaler) continues in fp16, and says so.
case_fp32_resumed_in_fp16() {
    set -ef
    rm -rf "$WORK/to_fp16"
    cp -r "$WORK/straight" "$WORK/to_fp16"
    local log="$WORK/logs/to_fp16.txt"
    out "$log" cityseg train --resume "$WORK/to_fp16" train.precision=fp16 train.epochs=3
    expect "the run was trained in fp32 and continues in fp16" "$log"
    expect "epoch 3/3 |" "$log"
    helper checkpoint-precision "$WORK/to_fp16/checkpoint_last.pt" fp16
}

# torchrun with train.device=cpu on a GPU node: gloo (NCCL refuses CPU tensors).
case_cpu_job_on_gpu_node_gloo() {
    set -ef
    local log="$WORK/logs/cpu_job.txt"
    out "$log" torchrun --nproc_per_node 2 -m cityseg train --out "$WORK/cpu_job" $COMMON \
        train.device=cpu train.precision=fp32 train.epochs=1 data.size=[64,128]
    expect "device cpu" "$log"
    expect "| 2 processes" "$log"
}

# Two processes for one visible GPU: one line saying what to change, before any set-up.
case_more_processes_than_gpus() {
    set -ef
    local log="$WORK/logs/two_on_one.txt"
    if CUDA_VISIBLE_DEVICES=$FIRST_GPU out "$log" torchrun --nproc_per_node 2 -m cityseg train \
        --out "$WORK/two_on_one" $COMMON; then
        echo "CHECK FAILED: two processes on one GPU were accepted"
        return 1
    fi
    expect "2 processes on this node but only 1 GPU(s) visible: use torchrun --nproc_per_node=1" \
        "$log"
}

case_export_keeps_device() { set -ef; helper export-keeps-device "$WORK/keeps_device.onnx"; }

case_bf16_rule_on_this_gpu() { set -ef; helper bf16-rule; }

case_fp16_overflow_stops() {
    set -ef
    rm -rf "$WORK/overflow"
    helper fp16-overflow "$WORK/overflow" $COMMON
}

case_onnx_device_id() { set -ef; helper ort-device "$WORK/model.onnx"; }

# A CUDA provider that cannot start (a GPU index past the last one): a warning, then the CPU.
case_onnx_provider_warning() {
    set -ef
    helper ort-available
    local count log="$WORK/logs/onnx_warning.txt"
    count=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
    out "$log" cityseg predict --onnx "$WORK/model.onnx" "$WORK/data/leftImg8bit/val" \
        --out "$WORK/predictions_warning" --device "cuda:$count" --no-progress
    expect "could not start CUDAExecutionProvider" "$log"
    expect "segmented 8 images" "$log"
}

# --precision auto asks the GPU given by --device.
case_evaluate_precision_auto() {
    set -ef
    evaluate_case eval_auto --precision auto --device cuda:0
    helper evaluation "$WORK/eval_auto/metrics.json" --precision auto-rule
}

case_load_model_on_host() { set -ef; helper load-on-host "$WORK/run_fp16/checkpoint_last.pt"; }

# Training speed of the shipped model's recipe and of the Cityscapes recipe, batch 8.
case_speed_recipes() {
    set -ef
    helper speed "$REPO/configs/pretrained_pairs.yaml" "$REPO/configs/cityscapes.yaml" --batch 8
}

case_bench_train_step() { set -ef; bench bench_train_step; }
case_bench_inference() { set -ef; bench bench_inference; }
case_bench_epoch() { set -ef; bench bench_epoch; }
case_bench_loader() { set -ef; bench bench_loader; }

# name, planned seconds on one modern GPU, "quick" when --quick runs it, and what it proves
# (encoder cases: fp16 and bf16 with channels_last, the encoder frozen in the first epoch).
# (Cases that need 2 GPUs count in the plan only where there are 2.)
CASE_TABLE="
generate_data                    5 quick  generated street scenes for the runs below
train_fp16_channels_last         9 quick  fp16 autocast, grad scaler, channels_last; saved as fp16
train_bf16_contiguous            9 quick  bf16 autocast, contiguous; the checkpoint evaluated below
encoder_efficientnet_lite0      18 quick  Lite0 (depthwise SAME convs), ImageNet weights, fp16+bf16
encoder_resnet18                18 -      ResNet-18 from a local weight file, fp16+bf16
encoder_mobilenet_v2            18 -      MobileNetV2 from a local weight file, fp16+bf16
train_ema                        9 -      train.ema_decay: the average saved as the model
train_compile                   40 quick  train.compile=true trains to the end (bf16, NHWC)
sync_bn_two_gpus                20 quick  SyncBatchNorm on 2 GPUs with a blank step: no hang
nccl_every_gpu                  15 quick  one process per visible GPU over NCCL
only_gpu_used                   12 quick  one process on cuda:1 opens no CUDA context on another GPU
resume_exact_after_ctrl_c       24 quick  Ctrl-C mid-epoch, resumed: bit-identical weights
evaluate_whole                   5 -      evaluate, whole images, on cuda
evaluate_slide                   5 -      evaluate, sliding window with channels_last
evaluate_tta                     5 -      evaluate with flip TTA in bf16
predict                          5 -      predict writes the 8 label PNGs
export_onnx                      7 quick  ONNX export agrees with PyTorch (argmax)
predict_onnx_cuda                6 quick  onnxruntime's CUDA provider starts and segments
resume_with_fewer_gpus           9 -      a run saved by 4 GPUs resumes on one
fp32_resumed_in_fp16             9 -      an fp32 run continues in fp16 and says so
cpu_job_on_gpu_node_gloo        12 -      torchrun with train.device=cpu on a GPU node uses gloo
more_processes_than_gpus         5 -      2 processes for 1 GPU: one line, before any set-up
export_keeps_device              5 -      export leaves the model on the GPU, training
bf16_rule_on_this_gpu            4 -      auto precision asks the GPU in use
fp16_overflow_stops              7 -      fp16 gradients always infinite: one line, stop
onnx_device_id                   5 -      onnxruntime on the GPU asked for; no TensorRT in auto
onnx_provider_warning            5 -      a CUDA provider that cannot start: a warning, then the CPU
evaluate_precision_auto          5 -      evaluate --precision auto asks the GPU given by --device
load_model_on_host               4 -      load_model: only the model reaches the GPU
speed_recipes                   20 quick  img/s: shipped recipe and cityscapes.yaml, batch 8
"
BENCHMARK_TABLE="
bench_train_step                45 -      the training-step benchmark's GPU smoke form
bench_inference                 45 -      the inference benchmark's GPU smoke form
bench_epoch                     45 -      the epoch benchmark's GPU smoke form
bench_loader                    30 -      the loader benchmark's GPU smoke form
"
MULTI_GPU_CASES=" sync_bn_two_gpus nccl_every_gpu only_gpu_used "

# select_cases TABLE QUICK: the names of TABLE's cases (only the quick ones when QUICK is 1).
select_cases() {
    local name plan quick proves
    while read -r name plan quick proves; do
        [ -n "$name" ] || continue
        if [ "$2" = 1 ] && [ "$quick" != quick ]; then continue; fi
        echo "$name"
    done <<<"$1"
}

# plan_of NAME: the planned seconds of case NAME.
plan_of() { awk -v n="$1" '$1 == n { print $2 }' <<<"$CASE_TABLE$BENCHMARK_TABLE"; }

# planned_seconds GPUS NAME...: the plan of these cases on a machine with GPUS GPUs.
planned_seconds() {
    local gpus=$1 name total=0
    shift
    for name in "$@"; do
        if ((gpus < 2)) && [[ $MULTI_GPU_CASES == *" $name "* ]]; then continue; fi
        total=$((total + $(plan_of "$name")))
    done
    echo "$total"
}

# --- running them --------------------------------------------------------------------------------

setup() {
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    WORK=${1:-$(mktemp -d /tmp/cityseg_gpu_check.XXXXXX)}
    mkdir -p "$WORK/logs"
    export REPO WORK
    export PYTHON=${PYTHON:-$(command -v python3 || command -v python || echo python3)}
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    BUDGET=${BUDGET:-450}
    # The training runs: generated street scenes at 128x256, a small U-Net, 4 steps an epoch.
    export COMMON="data.root=$WORK/data data.format=cityscapes data.size=[128,256]
        data.workers=2 model.base_width=8 model.depth=3 train.batch_size=8 train.epochs=2
        train.device=cuda train.progress=false"
    # Exact resume: float32, deterministic kernels (transposed convolutions: bilinear upsampling
    # has no deterministic backward on CUDA), no loader workers.
    export EXACT="train.precision=fp32 train.deterministic=true model.upsampling=transpose
        data.workers=0"
    # The first GPU alone, for the case that needs a node with one GPU.
    FIRST_GPU=${CUDA_VISIBLE_DEVICES:-0}
    export FIRST_GPU=${FIRST_GPU%%,*}
    export GPUS=0
    export -f cityseg torchrun helper out expect bench evaluate_case need_gpus encoder_case
    export -f $(compgen -A function case_)
    NAMES=() RESULTS=() TIMES=() PLANS=()
    STARTED=$SECONDS
}

# run_case NAME: run case_NAME in a bash of its own, within 3 x its plan + 20 s and what is left
# of the budget; record PASS, FAIL (also: timed out, or not run because the budget ran out) or
# SKIP (exit status 77).
run_case() {
    local name=$1 plan limit left status start result
    plan=$(plan_of "$name")
    plan=${plan:-10}
    left=$((BUDGET - (SECONDS - STARTED)))
    limit=$((3 * plan + 20))
    if ((left < limit)); then limit=$left; fi
    NAMES+=("$name") PLANS+=("$plan")
    if ((limit < 1)); then
        echo "not run: the budget of $BUDGET s ran out (BUDGET=... gives more)" \
            >"$WORK/logs/$name.log"
        RESULTS+=("FAIL") TIMES+=("0.0")
        printf '%-30s %-4s (not run: the %s s budget ran out)\n' "$name" FAIL "$BUDGET"
        return
    fi
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" bash -c "case_$name" >"$WORK/logs/$name.log" 2>&1
    status=$?
    case $status in
        0) result=PASS ;;
        77) result=SKIP ;;
        124 | 137) result=FAIL && echo "timed out after $limit s" >>"$WORK/logs/$name.log" ;;
        *) result=FAIL ;;
    esac
    RESULTS+=("$result")
    TIMES+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')")
    printf '%-30s %-4s %7s s (plan %3s s)   %s\n' "$name" "$result" "${TIMES[-1]}" "$plan" \
        "$WORK/logs/$name.log"
}

print_table() {
    local index failed=0 passed=0 skipped=0
    printf '\n| %-30s | %-6s | %7s | %4s |\n|%s|--------|---------|------|\n' case result \
        seconds plan "$(printf -- '-%.0s' {1..32})"
    for index in "${!NAMES[@]}"; do
        printf '| %-30s | %-6s | %7s | %4s |\n' "${NAMES[$index]}" "${RESULTS[$index]}" \
            "${TIMES[$index]}" "${PLANS[$index]}"
        case ${RESULTS[$index]} in
            PASS) passed=$((passed + 1)) ;;
            FAIL) failed=$((failed + 1)) ;;
            *) skipped=$((skipped + 1)) ;;
        esac
    done
    if [ -f "$WORK/logs/speed_recipes.log" ]; then grep '^speed ' "$WORK/logs/speed_recipes.log"; fi
    printf '\n%d passed, %d failed, %d skipped in %d s; logs in %s\n' \
        "$passed" "$failed" "$skipped" $((SECONDS - STARTED)) "$WORK/logs"
    [ "$failed" = 0 ]
}

main() {
    local quick=0 benchmarks=0 name work=
    while (($#)); do
        case $1 in
            --quick) quick=1 ;;
            --benchmarks) benchmarks=1 ;;
            --list)
                grep -v '^$' <<<"$CASE_TABLE$BENCHMARK_TABLE"
                return 0
                ;;
            -*) echo "unknown option $1; see the top of $0" >&2 && return 2 ;;
            *) work=$1 ;;
        esac
        shift
    done
    setup "$work"
    echo "cityseg GPU check of $REPO; work folder $WORK"
    NAMES+=(requirements) PLANS+=(5)
    if helper requirements >"$WORK/logs/requirements.log" 2>&1; then
        RESULTS+=(PASS)
    else
        RESULTS+=(FAIL)
    fi
    TIMES+=("$((SECONDS - STARTED)).0")
    cat "$WORK/logs/requirements.log"
    if [ "${RESULTS[0]}" != PASS ]; then
        echo "the GPU check cannot run here: the lines 'missing:' above say what is lacking"
        print_table
        return 1
    fi
    GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
    local cases=($(select_cases "$CASE_TABLE" "$quick"))
    if [ "$benchmarks" = 1 ]; then cases+=($(select_cases "$BENCHMARK_TABLE" 0)); fi
    echo "$GPUS GPU(s); ${#cases[@]} cases planned to take $(planned_seconds "$GPUS" \
        "${cases[@]}") s on a modern GPU; budget $BUDGET s"
    for name in "${cases[@]}"; do
        run_case "$name"
    done
    print_table
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # (sourced, it only defines the cases)
    main "$@"
fi
