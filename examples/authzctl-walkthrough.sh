#!/usr/bin/env bash
# A walk-through of authzctl against a running authzd: a tenant, a bulk import, checks (exit 0
# allowed, 3 denied), a batch, effective permissions, a custom group, a previewed group edit,
# the audit log. The test suite runs it against the real server (memory store and Postgres).
#
#   cargo run --release &                     # authzd on 127.0.0.1:50051
#   PATH=target/release:$PATH examples/authzctl-walkthrough.sh
#
# AUTHZ_SERVER names the server (default http://127.0.0.1:50051), AUTHZ_API_KEY the key.
set -euo pipefail
tenant=${TENANT:-acme}

# Runs a command that must exit with the given code (0 allowed, 3 denied, 1 failed).
expect() {
  local want=$1; shift
  local got=0
  "$@" || got=$?
  if [[ $got != "$want" ]]; then
    echo "expected exit $want, got $got: $*" >&2
    exit 1
  fi
}

echo "== a tenant and its staff, imported by group system name"
authzctl tenant create "$tenant" --name "Acme"
authzctl import "$tenant" - <<'CSV'
user,groups,email
alice,analysts,alice@acme.test
bob,marketers,bob@acme.test
olivia,owners,olivia@acme.test
CSV

echo "== checks: exit 0 when allowed, 3 when denied"
expect 0 authzctl check "$tenant" alice --permission export_customers
expect 3 authzctl check "$tenant" alice --permission delete_customers
expect 3 authzctl check "$tenant" alice --action customers.export_customers \
  --context include_personal_data=true --explain
# A mistake is an error (exit 1) that says what to fix, never a denial.
expect 1 authzctl check "$tenant" alice --permission export_customer

echo "== a batch from CSV: one line per check"
expect 3 authzctl batch "$tenant" - <<'CSV'
user,permission,action,context
alice,view_reports,,
bob,,flows.add_a_flow,multibrand=false
alice,delete_customers,,
CSV

echo "== what Alice holds, and from where"
authzctl effective "$tenant" alice | head -5

echo "== a custom group, its members, and an edit previewed before it is made"
authzctl group create "$tenant" email_specialist --name "Email Specialist" \
  -p view_campaign_manager -p view_and_edit_email_messages -p send_test_messages
authzctl group add-members "$tenant" email_specialist dave
authzctl group edit "$tenant" email_specialist --remove send_test_messages --dry-run
expect 0 authzctl check "$tenant" dave --permission send_test_messages
authzctl group edit "$tenant" email_specialist --remove send_test_messages
expect 3 authzctl check "$tenant" dave --permission send_test_messages
authzctl group show "$tenant" email_specialist

echo "== for scripts: JSON"
authzctl check "$tenant" dave --permission send_test_messages --output json || true

echo "== the audit log, newest first"
authzctl audit "$tenant" --limit 3
echo "walk-through done"
