#!/usr/bin/env bash
# The learning runs of docs/BENCHMARKS.md ("dclaw-paper on a GPU"): unified, mbrl and sac, three
# seeds each, all at once on one GPU box, each stopped (SIGINT) after DEADLINE seconds.
# Every episode is already in its run's episodes.jsonl when it ends, so a stopped run loses
# nothing; `dclaw report` reads the directories afterwards.
#
#   benchmarks/gpu_learning.sh DEADLINE_S [PRESET] [OUT_DIR]
#
# PYTHON (default python3) runs `-m dclaw`; extra Python packages come from PYTHONPATH.
set -u
deadline=${1:?usage: gpu_learning.sh DEADLINE_S [PRESET] [OUT_DIR]}
preset=${2:-dclaw-paper}
out=${3:-runs/gpu}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
algos=${ALGOS:-unified mbrl sac}
seeds=${SEEDS:-0 1 2}
mkdir -p "$out"

"$python" -c "import torch, mujoco, gymnasium; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__)" || exit 1
"$python" -c "from sim.assets import model_path; model_path()" || exit 1  # one mirror, not nine racing

pids=()
for a in $algos; do for s in $seeds; do
  OMP_NUM_THREADS=1 timeout -s INT "$deadline" "$python" -m dclaw train --algo "$a" --seed "$s" \
      --preset "$preset" --episodes 2000 --device "$device" --checkpoint-every 50 \
      --out "$out/$a-s$s" --no-progress >"$out/$a-s$s.log" 2>&1 &
  pids+=($!)
done; done

start=$(date +%s)
told=()
while :; do
  sleep 30
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  line="t=$(( $(date +%s) - start ))s alive=$alive"
  for d in "$out"/*/; do
    n=$(wc -l 2>/dev/null <"$d/episodes.jsonl" || echo 0)
    line="$line $(basename "$d")=$n"
  done
  echo "$line"
  [ "$alive" -eq 0 ] && break
  # A run that died on its own (not at the deadline) says why at once, once.
  for f in "$out"/*.log; do
    [[ " ${told[*]-} " == *" $f "* ]] && continue
    if grep -q Traceback "$f" && ! grep -q KeyboardInterrupt "$f"; then
      echo "== $f"; tail -20 "$f"; told+=("$f")
    fi
  done
done
wait
for f in "$out"/*.log; do echo "== $f: $(tail -1 "$f")"; done
