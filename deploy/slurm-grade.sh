#!/bin/bash
# Submit the grading of a class to Slurm: the shard array (deploy/slurm.sbatch), then the merge,
# which starts only when every shard succeeded. Run it from the checkout, on a file system every
# node sees; results go to grading/ (grades.csv, canvas.csv, gradescope/, feedback/, reports/).
#
#   deploy/slurm-grade.sh SUBMISSIONS_DIR       # SHARDS=32 for 32 shards (default: the file's --array)
#
# The grading secret (grading/secret, mode 600) is made once and kept: every shard, every rerun
# and every regrade with --secret-file grading/secret sees the same hidden cases.
set -euo pipefail
SBATCH=${SBATCH:-sbatch}
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 SUBMISSIONS_DIR" >&2; exit 2; }
export MHACOURSE=${MHACOURSE:-$PWD/.venv/bin/mhacourse}
[ -x "$MHACOURSE" ] || { echo "no $MHACOURSE: run make venv first, or set MHACOURSE" >&2; exit 2; }
mkdir -p grading/logs grading/parts
if [ ! -s grading/secret ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(16))' > grading/secret)
  echo "made the grading secret grading/secret (keep it for regrades)"
fi
array=()
[ -n "${SHARDS:-}" ] && array=(--array="1-$SHARDS")
# --parsable prints "jobid" or, on a federated cluster, "jobid;cluster": keep the id.
shards=$("$SBATCH" --parsable "${array[@]}" "$here/slurm.sbatch" "$1")
shards=${shards%%;*}
merge=$("$SBATCH" --parsable --array=1 --dependency="afterok:$shards" "$here/slurm.sbatch" merge)
merge=${merge%%;*}
echo "shards: job $shards; merge: job $merge (after every shard succeeded); squeue --me to follow"
