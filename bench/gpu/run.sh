#!/usr/bin/env bash
# One prepared GPU session (issues 15 and 14), run on the lent machine from the repository root with
# .device carried (bench/gpu/prepare.py). See bench/gpu/README.md. Everything lands in $OUT:
#   log.txt          all output (each process also logs to logs/<name>.log inside results.tar.gz)
#   results.tar.gz   results.csv/args/summaries of every detector run, the classifier's per-fold and
#                    merged out-of-fold predictions and summaries, ranking.json, plan.json, left_out.txt
#   weights_<n>.tar  best.pt of the detector runs (variants in ranking order) and the classifier
#                    trained on folds 1-4 (classifier.onnx), as many as the return limits allow
# Time boxes: everything is packed BUDGET seconds after the start (default 510), whatever happened.
# Settings (environment): BUDGET, STEPS ("setup data det cls pack"), VARIANTS, FOLDS ("1 2 3 4"),
#   DEVICE (0; "cpu" for the CPU test), IMGSZ (512), BATCH (32), DET_WORKERS (1 per training),
#   DET_EPOCHS (300: --hours decides), CLS_FOLDS ("0 1 2 3 4"), CLS_EPOCHS (12), CLS_BATCH (32),
#   CLS_IMGSZ (plan.json's), CLS_FINAL (1: also train on folds 1-4 and export), PY (python3),
#   INSTALL (1: wheels into /tmp/site; 0: use the current environment), WORK (/tmp/gk).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
D=${D:-$ROOT/.device}
WORK=${WORK:-/tmp/gk}
BUDGET=${BUDGET:-510}
STEPS=${STEPS:-"setup data det cls pack"}
DEVICE=${DEVICE:-0}
PY=${PY:-python3}
VARIANTS=${VARIANTS:-"plain512 clahe512 lungroi512clahe"}
FOLDS=${FOLDS:-"1 2 3 4"}
IMGSZ=${IMGSZ:-512}
BATCH=${BATCH:-32}
DET_WORKERS=${DET_WORKERS:-1}
DET_EPOCHS=${DET_EPOCHS:-300}
CLS_FOLDS=${CLS_FOLDS:-"0 1 2 3 4"}
CLS_EPOCHS=${CLS_EPOCHS:-12}
CLS_BATCH=${CLS_BATCH:-32}
CLS_FINAL=${CLS_FINAL:-1}
T0=$(date +%s)
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/yolo-config
left() { echo $(( T0 + $1 - $(date +%s) )); }   # seconds until BUDGET-relative mark $1
say() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/cls"
cp "$D/plan.json" "$WORK/plan.json" 2>/dev/null

say "machine $(date -u +%FT%TZ), $(nproc) cores, revision $(git rev-parse --short HEAD 2>/dev/null || cat "$D/plan.json" | grep -m1 revision)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY --version
case " $STEPS " in *" setup "*)
  if [ "${INSTALL:-1}" = 1 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$D/shim:$ROOT/src
  else
    export PYTHONPATH=$D/shim:$ROOT/src
  fi
  $PY -c "import torch, thoracic, ultralytics, polars, efficientnet_lite_pytorch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'); print('thoracic', thoracic.__file__, 'ultralytics', ultralytics.__version__, 'polars stand-in', polars.__file__)" || exit 1
;; *) export PYTHONPATH=${PYTHONPATH:-$D/shim:$ROOT/src} ;; esac
TH="$PY -m thoracic.cli.main"

case " $STEPS " in *" data "*)
  say "data"
  $PY bench/gpu/materialize.py "$D" "$WORK/data" --variants "$(echo $VARIANTS | tr ' ' ',')" --procs "$(nproc)" || exit 1
;; esac

pids=()
case " $STEPS " in *" det "*)
  LIMIT=$(left $(( BUDGET - 40 )))          # hard stop of every detector process
  HOURS=$($PY -c "print(round(max(60, $LIMIT - 75) / 3600, 4))")  # ultralytics stops itself before that
  say "detector: variants [$VARIANTS] x folds [$FOLDS], --hours $HOURS each, hard limit $LIMIT s"
  for v in $VARIANTS; do for k in $FOLDS; do
    timeout -k 5 "$LIMIT" $TH train detector --data "$WORK/data/det/$v/data_$k.yaml" --out "$WORK/runs/$v" \
      --name "fold_$k" --model yolov5n --pretrained "$D/yolov5n-coco.pt" --epochs "$DET_EPOCHS" --hours "$HOURS" \
      --imgsz "$IMGSZ" --batch "$BATCH" --nbs "$BATCH" --warmup-epochs 3 --close-mosaic 10 --patience 300 \
      --device "$DEVICE" --workers "$DET_WORKERS" --threads 1 --cache ram > "$WORK/logs/det_${v}_fold$k.log" 2>&1 &
    pids+=($!)
  done; done
;; esac

case " $STEPS " in *" cls "*)
  LIMIT=$(left $(( BUDGET - 35 )))
  CLS_IMGSZ=${CLS_IMGSZ:-$($PY -c "import json; print(json.load(open('$D/plan.json'))['classifier']['imgsz'])")}
  CDEV=cuda; [ "$DEVICE" = cpu ] && CDEV=cpu
  C="$WORK/data/cls"
  common=(--arch efficientnet-lite0 --pretrained "$WORK/data/lite0.pth" --images "$C/images" --folds "$C/folds.csv"
          --imgsz "$CLS_IMGSZ" --epochs "$CLS_EPOCHS" --batch "$CLS_BATCH" --device "$CDEV" --threads 1)
  say "classifier: EfficientNet-Lite0 folds [$CLS_FOLDS] at $CLS_IMGSZ px, $CLS_EPOCHS epochs, hard limit $LIMIT s"
  for k in $CLS_FOLDS; do
    timeout -k 5 "$LIMIT" $TH train classifier --images-csv "$C/images.csv" "${common[@]}" --cv-folds "$k" --no-final \
      --out "$WORK/cls/fold_$k" > "$WORK/logs/cls_fold$k.log" 2>&1 &
    pids+=($!)
  done
  if [ "$CLS_FINAL" = 1 ]; then  # trained on folds 1-4 only: the 2-class filter of the paper table's fold-0 rows
    first=$(echo $FOLDS | cut -d' ' -f1)
    timeout -k 5 "$LIMIT" $TH train classifier --images-csv "$C/images_f1234.csv" "${common[@]}" --cv-folds "$first" \
      --out "$WORK/cls/final_f1234" > "$WORK/logs/cls_final_f1234.log" 2>&1 &
    pids+=($!)
  fi
;; esac

if [ ${#pids[@]} -gt 0 ]; then
  say "${#pids[@]} processes running"
  while :; do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    [ "$alive" = 0 ] && break
    [ "$(left $(( BUDGET - 25 )))" -le 0 ] && { say "budget reached: stopping $alive"; for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; sleep 3; break; }
    sleep 10
    say "$alive running; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null) load $(cut -d' ' -f1 /proc/loadavg)"
    for f in "$WORK"/runs/*/fold_*/results.csv; do [ -f "$f" ] && echo "   $f: $(( $(wc -l < "$f") - 1 )) epochs"; done | sed "s|$WORK/runs/||" | paste -sd' ' | cut -c1-400
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$WORK"/logs/*.log; do echo "--- $(basename "$f"): $(tail -c 300 "$f" | tr '\r' '\n' | tail -2 | tr '\n' ' ')"; done
fi

case " $STEPS " in *" pack "*)
  say "pack"
  $PY bench/gpu/pack.py "$WORK" "$OUT"
;; esac
say "done $(date -u +%FT%TZ)"
ls -la "$OUT"
