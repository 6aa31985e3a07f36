#!/usr/bin/env bash
# The GPU paths of cityseg, checked on a machine with an NVIDIA GPU, offline, in a few minutes:
# training (fp16, bf16, channels_last, torchrun, exact resume after Ctrl-C), evaluate (whole, slide,
# TTA), predict, ONNX export and onnxruntime on CUDA, the benchmarks' GPU forms, and the cases only
# a GPU shows. Prints one table: case, PASS / FAIL / SKIP, seconds; exit status 1 if any failed.
#
#   scripts/gpu_check.sh [WORK_DIR]
#
# Needs a Python where torch (a CUDA build), onnx, onnxruntime and cityseg's other dependencies
# import; the sources come from this repository (PYTHONPATH=src), so nothing is installed and no
# network is used. The first case says what is missing. Settings (environment): PYTHON (default
# python3, else python), CASE_TIMEOUT (seconds per case, 150), BUDGET (seconds for all the cases,
# 290: the ones left are then skipped). WORK_DIR (default: a new folder under /tmp, its path
# without spaces) holds the data, the runs and each case's log, logs/<case>.log.

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

case_torchrun_one_process() {
    set -ef
    local log="$WORK/logs/torchrun_1.txt"
    out "$log" torchrun --nproc_per_node 1 -m cityseg train --out "$WORK/run_torchrun" $COMMON
    expect "| 1 process" "$log"
    expect "epoch 2/2 |" "$log"
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

case_bench_train_step() { set -ef; bench bench_train_step; }
case_bench_inference() { set -ef; bench bench_inference; }
case_bench_epoch() { set -ef; bench bench_epoch; }
case_bench_loader() { set -ef; bench bench_loader; }

CASES=(
    generate_data train_fp16_channels_last train_bf16_contiguous torchrun_one_process
    resume_exact_after_ctrl_c evaluate_whole evaluate_slide evaluate_tta predict export_onnx
    predict_onnx_cuda resume_with_fewer_gpus fp32_resumed_in_fp16 cpu_job_on_gpu_node_gloo
    more_processes_than_gpus export_keeps_device bf16_rule_on_this_gpu fp16_overflow_stops
    onnx_device_id onnx_provider_warning evaluate_precision_auto load_model_on_host
    bench_train_step bench_inference bench_epoch bench_loader
)

# --- running them --------------------------------------------------------------------------------

setup() {
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    WORK=${1:-$(mktemp -d /tmp/cityseg_gpu_check.XXXXXX)}
    mkdir -p "$WORK/logs"
    export REPO WORK
    export PYTHON=${PYTHON:-$(command -v python3 || command -v python || echo python3)}
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1
    CASE_TIMEOUT=${CASE_TIMEOUT:-150}
    BUDGET=${BUDGET:-290}
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
    export -f cityseg torchrun helper out expect bench evaluate_case
    export -f $(compgen -A function case_)
    NAMES=() RESULTS=() TIMES=()
    STARTED=$SECONDS
}

run_case() {  # NAME COMMAND: run COMMAND (a function name) as case NAME, record the result
    local name=$1 command=$2 status start result
    if ((SECONDS - STARTED > BUDGET)); then
        NAMES+=("$name") RESULTS+=("SKIP") TIMES+=("0.0")
        printf '%-34s %-4s (no time left of the %s s budget)\n' "$name" SKIP "$BUDGET"
        return
    fi
    start=$(date +%s.%N)
    timeout --kill-after=10 "$CASE_TIMEOUT" bash -c "$command" >"$WORK/logs/$name.log" 2>&1
    status=$?
    case $status in
        0) result=PASS ;;
        77) result=SKIP ;;
        124 | 137) result=FAIL && echo "timed out after ${CASE_TIMEOUT} s" >>"$WORK/logs/$name.log" ;;
        *) result=FAIL ;;
    esac
    NAMES+=("$name") RESULTS+=("$result")
    TIMES+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')")
    printf '%-34s %-4s %7s s   %s\n' "$name" "$result" "${TIMES[-1]}" "$WORK/logs/$name.log"
}

print_table() {
    local index failed=0 passed=0 skipped=0
    printf '\n| %-34s | %-6s | %7s |\n|%s|--------|---------|\n' case result seconds \
        "$(printf -- '-%.0s' {1..36})"
    for index in "${!NAMES[@]}"; do
        printf '| %-34s | %-6s | %7s |\n' "${NAMES[$index]}" "${RESULTS[$index]}" "${TIMES[$index]}"
        case ${RESULTS[$index]} in
            PASS) passed=$((passed + 1)) ;;
            FAIL) failed=$((failed + 1)) ;;
            *) skipped=$((skipped + 1)) ;;
        esac
    done
    printf '\n%d passed, %d failed, %d skipped in %d s; logs in %s\n' \
        "$passed" "$failed" "$skipped" $((SECONDS - STARTED)) "$WORK/logs"
    [ "$failed" = 0 ]
}

main() {
    setup "$@"
    echo "cityseg GPU check of $REPO; work folder $WORK"
    run_case requirements "helper requirements"
    cat "$WORK/logs/requirements.log"
    if [ "${RESULTS[0]}" != PASS ]; then
        echo "the GPU check cannot run here: the lines 'missing:' above say what is lacking"
        print_table
        return 1
    fi
    local name
    for name in "${CASES[@]}"; do
        run_case "$name" "case_$name"
    done
    print_table
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # (sourced, it only defines the cases)
    main "$@"
fi
