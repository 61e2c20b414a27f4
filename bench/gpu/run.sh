#!/usr/bin/env bash
# The GPU session of issue 8 (item 4), run on the lent machine from the repository root with the
# folder of bench/gpu/prepare.py carried (.device). Everything lands in $OUT:
#   log.txt           all output
#   best.pt           the detector trained here (ultralytics checkpoint)
#   run.tar.gz        results.csv, args.yaml, thoracic_train.json, thoracic_summary.json
#   gpu_predict.json  bench/gpu/predict_gpu.py (ultralytics on the GPU, ONNX Runtime providers)
#   p2.txt            bench/predict.py p2 on that machine's CPU cores
# Settings (environment): HOURS (training budget, default 0.07), DEVICE (default 0), BATCH (32),
# DATA (default .device/nih/data_0.yaml), STEPS ("train predict p2"), P2_ARGS ("--rounds 2"),
# P2_LIMIT (seconds, 240), PY (python3),
# INSTALL (1: install .device/whl into /tmp/site; 0 to use the current environment).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
D=$ROOT/.device
HOURS=${HOURS:-0.07}
DEVICE=${DEVICE:-0}
BATCH=${BATCH:-32}
DATA=${DATA:-$D/nih/data_0.yaml}
STEPS=${STEPS:-"train predict p2"}
PY=${PY:-python3}
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1

echo "== machine $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "cores: $(nproc)"; $PY --version

# thoracic at the committed revision of prepare.py, with the model and sample files of this tree
H=/tmp/thoracic-head
rm -rf "$H" && cp -r "$D/head" "$H"
for m in detector classifier lungs; do cp "src/thoracic/models/$m/$m.onnx" "$H/src/thoracic/models/$m/"; done
cp -r src/thoracic/samples "$H/src/thoracic/samples"
ln -s "$ROOT/tests" "$H/tests"
echo "thoracic revision $(cat "$H/REVISION")"
if [ "${INSTALL:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$D/shim:$H/src
else
  export PYTHONPATH=$D/shim:$H/src
fi
export YOLO_CONFIG_DIR=/tmp/yolo-config
$PY -c "import torch, onnxruntime as ort, thoracic, ultralytics, polars; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'); print('onnxruntime', ort.__version__, ort.get_available_providers()); print('thoracic', thoracic.__version__, thoracic.__file__); print('ultralytics', ultralytics.__version__); print('polars stand-in', polars.__file__)" || exit 1

RUN=/tmp/runs/gpu-v5n-512
case " $STEPS " in *" train "*)
  echo "== train (budget $HOURS h)"
  t0=$(date +%s)
  DATA_ABS=/tmp/thoracic-data.yaml  # ultralytics resolves a relative 'path:' against the working folder
  sed "s|^path:.*|path: \"$(cd "$(dirname "$DATA")" && pwd)\"|" "$DATA" > "$DATA_ABS"
  LIMIT=$($PY -c "print(int(float('$HOURS') * 3600) + 240)")
  timeout "$LIMIT" \
  $PY -m thoracic.cli.main train detector --data "$DATA_ABS" --out /tmp/runs --name gpu-v5n-512 --model yolov5n \
    --pretrained "$D/yolov5n-coco.pt" --epochs 300 --hours "$HOURS" --imgsz 512 --batch "$BATCH" --nbs "$BATCH" \
    --warmup-epochs 3 --close-mosaic 10 --device "$DEVICE" --cache ram --save-period 0 --threads 2 --patience 300
  echo "train rc $? in $(( $(date +%s) - t0 )) s"
  cp "$RUN/weights/best.pt" "$OUT/best.pt" 2>/dev/null
  (cd "$RUN" && tar czf "$OUT/run.tar.gz" results.csv args.yaml thoracic_train.json thoracic_summary.json 2>/dev/null)
  $PY - "$RUN/results.csv" "$DATA" <<'EOF'
import sys, pandas as pd, pathlib
df = pd.read_csv(sys.argv[1]); df.columns = [c.strip() for c in df.columns]
data = pathlib.Path(sys.argv[2]); fold = data.stem.split("_")[-1]
n = sum(1 for l in (data.parent / f"train_{fold}.txt").read_text().splitlines() if l.strip())
t = df["time"].to_numpy(); per = t[1:] - t[:-1]
print(f"epochs {len(df)}, {t[-1]:.1f} s, {n} training images: {n * len(df) / t[-1]:.1f} images/s including validation; "
      f"median epoch {pd.Series(per).median():.2f} s after the first ({t[0]:.1f} s)")
print(df[["epoch", "time", "metrics/mAP50(B)", "metrics/mAP50-95(B)"]].to_string(index=False))
EOF
;; esac

case " $STEPS " in *" predict "*)
  echo "== GPU predict"
  W=$OUT/best.pt; [ -f "$W" ] || W=""
  if [ -n "$W" ] && [ "$DEVICE" != cpu ]; then
    timeout 240 $PY bench/gpu/predict_gpu.py --weights "$W" --images "$(dirname "$DATA")/val_0.txt" \
      --onnx src/thoracic/models/detector/detector.onnx > "$OUT/gpu_predict.json"
    echo "predict rc $?"; cat "$OUT/gpu_predict.json"
  else
    echo "skipped (no weights or no GPU)"
  fi
;; esac

case " $STEPS " in *" p2 "*)
  echo "== P2 on $(nproc) cores"
  timeout "${P2_LIMIT:-240}" $PY "$H/bench/predict.py" p2 ${P2_ARGS:---rounds 2} > "$OUT/p2.txt" 2>&1
  echo "p2 rc $?"; cat "$OUT/p2.txt"
;; esac
echo "== done $(date -u +%FT%TZ)"
