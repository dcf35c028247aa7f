#!/bin/sh
# Set up MinIO for qmroct, as the admin, with the MinIO client (mc). Run once; re-running is
# harmless. Needs: an mc alias with root credentials (mc alias set qmroct URL USER PASSWORD),
# the server started with a notify .env from this folder (notify-ow.env and
# notify-owmeasures.env, or notify-bridge.env), and one secret per role in the environment:
#   GATEWAY_SECRET ORCHESTRATION_SECRET RESEARCHER_SECRET DEVELOPER_SECRET ADMIN_SECRET
# Usage: sh infra/minio/setup.sh [ALIAS] [ow|bridge]
set -eu
ALIAS="${1:-qmroct}"
EVENTS="${2:-ow}"
HERE="$(cd "$(dirname "$0")" && pwd)"

# Buckets. Object lock (WORM per version) can only be chosen at creation; it implies
# versioning. The other two get versioning explicitly: events then carry a versionId, and
# on-image-stored reads exactly the version an event names.
mc mb --ignore-existing --with-lock "$ALIAS/oct-ingest"
mc mb --ignore-existing --with-lock "$ALIAS/oct-results"
mc mb --ignore-existing "$ALIAS/oct-measures"
mc mb --ignore-existing "$ALIAS/oct-derived"
# The measure developers' test set (phantoms/, cleared/, runs/; docs/measure-development.md).
mc mb --ignore-existing "$ALIAS/oct-devtest"
for b in oct-ingest oct-measures oct-results oct-derived oct-devtest; do
    mc version enable "$ALIAS/$b"
done

# One policy and one user per role (policies/<role>.json; the embedded store enforces the
# same files for the keys `qmroct up` makes).
add_role() {  # role user secret
    mc admin policy create "$ALIAS" "$1" "$HERE/policies/$1.json"
    mc admin user add "$ALIAS" "$2" "$3"
    mc admin policy attach "$ALIAS" "$1" --user "$2" || true  # already attached: fine
}
add_role gateway qmroct-gateway "$GATEWAY_SECRET"
add_role orchestration qmroct-orchestration "$ORCHESTRATION_SECRET"
add_role researcher qmroct-researcher "$RESEARCHER_SECRET"
add_role measure-developer qmroct-measure-developer "$DEVELOPER_SECRET"
add_role admin qmroct-admin "$ADMIN_SECRET"

# Bucket notifications into the webhook target(s) the server's environment defines. The
# notify-*.sh scripts use the alias they were generated with (qmroct.triggers.notify_config,
# alias "qmroct" unless told otherwise).
if [ "$EVENTS" = bridge ]; then
    sh "$HERE/notify-bridge.sh"
else
    sh "$HERE/notify-ow.sh"
    sh "$HERE/notify-owmeasures.sh"
fi
mc event list "$ALIAS/oct-ingest"
