#!/bin/sh
# Subscribe the buckets to the webhook target (MinIO must already have it).
set -eu
mc event add qmroct/oct-measures arn:minio:sqs::OWMEASURES:webhook --event put --suffix .json
