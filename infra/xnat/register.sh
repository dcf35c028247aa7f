#!/usr/bin/env bash
# Register the qmroct Container Service command and the Event Service subscription that runs
# it whenever an Ophthalmic Tomography session is archived in the project.
#   QMROCT_XNAT_URL=https://xnat.example.org QMROCT_XNAT_ALIAS=... QMROCT_XNAT_SECRET=... \
#   QMROCT_XNAT_PROJECT=GLAUCOMA infra/xnat/register.sh
# Needs an admin token (alias/secret from /data/services/tokens/issue), curl and python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${QMROCT_XNAT_URL:?}" "${QMROCT_XNAT_ALIAS:?}" "${QMROCT_XNAT_SECRET:?}" "${QMROCT_XNAT_PROJECT:?}"
auth=(-u "${QMROCT_XNAT_ALIAS}:${QMROCT_XNAT_SECRET}" -A "qmroct-register/0.1")
x="${QMROCT_XNAT_URL%/}"

command_id="$(curl -fsS "${auth[@]}" -X POST -H 'Content-Type: application/json' \
    --data-binary @"$here/command.json" "$x/xapi/commands")"
wrapper_id="$(curl -fsS "${auth[@]}" "$x/xapi/commands/$command_id" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["xnat"][0]["id"])')"
wrapper="qmroct-image-stored-session"
curl -fsS "${auth[@]}" -X PUT "$x/xapi/commands/$command_id/wrappers/$wrapper/enabled"
curl -fsS "${auth[@]}" -X PUT \
    "$x/xapi/projects/$QMROCT_XNAT_PROJECT/commands/$command_id/wrappers/$wrapper/enabled"

sed -e "s/\${WRAPPER_ID}/$wrapper_id/" -e "s/\${QMROCT_XNAT_PROJECT}/$QMROCT_XNAT_PROJECT/g" \
    "$here/event-subscription.json" \
  | curl -fsS "${auth[@]}" -X POST -H 'Content-Type: application/json' --data-binary @- \
    "$x/xapi/events/subscription"
echo "registered command $command_id (wrapper $wrapper_id) and the session-archived subscription"
