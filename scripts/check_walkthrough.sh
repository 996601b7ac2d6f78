#!/usr/bin/env bash
# Run the README's walk-through, exactly as written, against a fresh demo, and check what it
# printed. Used by CI so that the README cannot drift from what the gateway does.
set -euo pipefail
cd "$(dirname "$0")/.."

workdir=$(mktemp -d)
port=8000
export GATEWAY_DATABASE_URL="sqlite:///$workdir/walkthrough.sqlite3"
export GATEWAY_KEYS_DIR="$workdir/keys"

if curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; then
  echo "something already listens on port $port: stop it first" >&2
  exit 1
fi
mv var/demo.json "$workdir/demo.json.saved" 2>/dev/null || true

.venv/bin/gateway demo --port "$port" > "$workdir/demo.log" 2>&1 &
demo_pid=$!
cleanup() {
  kill "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  rm -f var/demo.json
  mv "$workdir/demo.json.saved" var/demo.json 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$workdir/demo.log"; exit 1; }
  sleep 1
done
curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"

# The walk-through, then the sharing rules' steps, which continue it in the same shell.
{
  sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md | sed '1,2d;$d' | sed '$d'
  sed -n '/<!-- sharing:start -->/,/<!-- sharing:end -->/p' README.md | sed '1,2d;$d' | sed '$d'
} > "$workdir/walkthrough.sh"
bash -euo pipefail "$workdir/walkthrough.sh" > "$workdir/out.txt" 2>&1 || { cat "$workdir/out.txt"; exit 1; }

expect() {
  if ! grep -q -- "$1" "$workdir/out.txt"; then
    echo "walk-through output lacks: $1" >&2
    cat "$workdir/out.txt" >&2
    exit 1
  fi
}
expect '"status": "200 OK"'
expect '"status": "201 Created"'
expect '"kind": "disclose"'
expect '"code": "child-protection-plan"'
expect 'Appointment: Paediatric service; was not brought; 2026-10-14'
expect '"name": "Robin Demo-Visitor"'
expect 'outsider: HTTP 403'
expect 'police.member@northshire.example,police_officer,police,staff:view:opened,child_protection,public_task'
expect '"reason": "refused"'
expect '"actor": {'
expect 'duty.worker@westshire.example'
expect 'export intact'
expect 'audit trail intact'
expect '"record_id": "OCC-2026-077001"'
expect 'Please be alert to their wellbeing'
expect '"acknowledged_by": "dsl@northshire-community-school.example"'
expect '"record_kind": "domestic_abuse_notification"'
expect "attendance rows: {'created': 27, 'unchanged': 0, 'rejected': 0}"
expect 'health by builtin.consent-not-given; requestable=False'
expect 'stated wishes: A person with parental responsibility (mother) refused consent to share health records for family help'
expect '"lawful_basis": "public_task"'
expect 'by builtin.override'
expect 'requestable=True'
expect 'builtin.approved-request'
expect 'deciding again: HTTP 409'
expect 'break-glass view: break_glass'
expect 'break-glass events to review: 2'
expect 'items: disclose: '
expect 'disclose/cp.police -> withhold_silently/builtin.default-deny'
expect 'persistent absence'
expect '"role": "suspect"'
python3 - "$workdir/out.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
# The police's notification and the new attendance (20 November 2026) are the newest of the timeline.
timeline = text[text.index('"timeline"'):]
first, second = re.findall(r'"occurred_at": "([^"]+)"', timeline)[:2]
assert sorted([first, second]) == ["2026-11-20T22:45:00Z", "2026-11-20T23:10:00Z"], (first, second)
# The school saw the police's notice, never the police's own account of the incident.
inbox = text[text.index('"withdrawn"') : text.index('"late"')]
assert "mother's partner was arrested" not in inbox, "the police record reached the school"
assert "Please be alert" in inbox
PY
echo "walk-through: OK ($(grep -c . "$workdir/out.txt") lines of output checked)"
