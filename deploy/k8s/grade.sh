#!/bin/bash
# Grade a class on Kubernetes, from the checkout, with kubectl's current context and namespace:
#
#   deploy/k8s/grade.sh SUBMISSIONS_DIR OUT_DIR            # grade, merge, copy grading/ to OUT_DIR
#   deploy/k8s/grade.sh --resume SUBMISSIONS_DIR OUT_DIR   # after a failure: keep the volume's
#                                                          # submissions and finished notebooks
#
# 1. the grading secret: $SECRET_FILE (default grading/secret) is made once, mode 600, and copied
#    into the Secret mhacourse-grade; keep it: a regrade with it sees the same hidden cases;
# 2. the volume (volume.yaml) and a pod holding it; the class is copied onto it;
# 3. the old Jobs are deleted (a Job cannot be changed: a rerun needs new ones);
# 4. the shard Job runs; we wait until it is Complete or Failed (not the whole timeout on failure);
# 5. the merge Job, waited for the same way; then the volume's grading/ is copied to OUT_DIR.
# Afterwards: `kubectl delete pod mhacourse-files` (the volume and its results stay).
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}
SECRET_FILE=${SECRET_FILE:-grading/secret}
WAIT_SECONDS=${WAIT_SECONDS:-21600}   # per Job
POLL_SECONDS=${POLL_SECONDS:-15}
here=$(cd "$(dirname "$0")" && pwd)
resume=0
if [ "${1:-}" = --resume ]; then resume=1; shift; fi
[ $# -eq 2 ] || { echo "usage: $0 [--resume] SUBMISSIONS_DIR OUT_DIR" >&2; exit 2; }
submissions=$1 out=$2
[ -d "$submissions" ] || { echo "no folder $submissions" >&2; exit 2; }

# Wait for job/$1 to be Complete (return 0) or Failed (return 1), at most WAIT_SECONDS (return 124).
wait_job() {
  local job=$1 start=$SECONDS state
  while :; do
    state=" $($KUBECTL get "job/$job" -o 'jsonpath={.status.conditions[?(@.status=="True")].type}') "
    case "$state" in
      *" Complete "*) echo "job/$job complete"; return 0 ;;
      *" Failed "*)
        echo "job/$job failed; see: kubectl describe job/$job; kubectl logs -l job-name=$job --tail=40" >&2
        return 1 ;;
    esac
    if [ $((SECONDS - start)) -ge "$WAIT_SECONDS" ]; then echo "job/$job: still running after ${WAIT_SECONDS}s" >&2; return 124; fi
    sleep "$POLL_SECONDS"
  done
}

if [ ! -s "$SECRET_FILE" ]; then
  mkdir -p "$(dirname "$SECRET_FILE")"
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' > "$SECRET_FILE")
  echo "made the grading secret $SECRET_FILE (keep it for regrades)"
fi
$KUBECTL create secret generic mhacourse-grade --from-file=secret="$SECRET_FILE" --dry-run=client -o yaml \
  | $KUBECTL apply -f -

$KUBECTL apply -k "$here" -l mhacourse/step=volume
$KUBECTL wait --for=condition=Ready pod/mhacourse-files --timeout=600s
$KUBECTL delete job -l 'mhacourse/step in (shards,merge)' --ignore-not-found --cascade=foreground --wait=true
if [ "$resume" = 0 ]; then
  $KUBECTL exec mhacourse-files -- rm -rf /class/submissions /class/grading
  $KUBECTL cp "$submissions" mhacourse-files:/class/submissions
fi

$KUBECTL apply -k "$here" -l mhacourse/step=shards
wait_job mhacourse-grade
$KUBECTL apply -k "$here" -l mhacourse/step=merge
wait_job mhacourse-grade-merge

$KUBECTL cp mhacourse-files:/class/grading "$out"
echo "grades: $out/grades.csv, Canvas: $out/canvas.csv, Gradescope: $out/gradescope/, feedback: $out/feedback/"
