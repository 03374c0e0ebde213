#!/usr/bin/env bash
# The fault suite (issue 11): really kills the driver, a worker and a node, damages checkpoints,
# fills the store's disk mid-run (a tmpfs: needs root, skipped otherwise), pauses a driver on an
# object store (moto on 127.0.0.1) past its lease while another takes over (issue 25), runs again,
# and prints what each fault cost. About 17 minutes on 2 shared cores.
#   bash bench/faults.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
table=$(mktemp /tmp/s3l-faults.XXXXXX.jsonl)
export S3L_FAULT_TABLE=$table
"$PY" -m pytest tests/sweeper/test_faults.py -m faults -q -p no:cacheprovider "$@"
status=$?
"$PY" - "$table" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
columns = ["fault", "trials lost", "trials re-run", "duplicate rows", "note"]
print()
print("| " + " | ".join(columns) + " |")
print("|" + "|".join("---" for _ in columns) + "|")
for row in rows:
    print("| " + " | ".join(str(row[c]) for c in columns) + " |")
if not rows:
    print("(no fault test ran)")
PY
rm -f "$table"
exit $status
