#!/bin/sh
# Subscribe the buckets to the webhook target (MinIO must already have it).
set -eu
mc event add qmroct/oct-ingest arn:minio:sqs::OW:webhook --event put
