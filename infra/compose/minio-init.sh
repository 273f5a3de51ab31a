#!/bin/sh
# One-shot MinIO set-up for the stack (the minio-init service, image minio/mc). Safe to run again:
# existing buckets, settings and users are kept.
#   lake    tradeflow's lake: raw and curated data, manifests, reports, the audit chain (versioned)
#   mlflow  MLflow's artifact store (the MLflow server writes here, --artifacts-destination)
#   audit   the signed audit checkpoints: Object Lock, default retention $AUDIT_LOCK_MODE $AUDIT_LOCK_DAYS days
# and a tradeflow user (the pipeline's and MLflow's S3 credentials) with MinIO's readwrite policy.
set -eu

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc ready local

mc mb --ignore-existing local/lake
mc version enable local/lake
mc mb --ignore-existing local/mlflow
# Object Lock can only be switched on when a bucket is created (it also turns versioning on).
mc mb --ignore-existing --with-lock local/audit
mc retention set --default "$AUDIT_LOCK_MODE" "${AUDIT_LOCK_DAYS}d" local/audit

mc admin user add local "$TRADEFLOW_S3_ACCESS_KEY" "$TRADEFLOW_S3_SECRET_KEY"
if ! mc admin user info local "$TRADEFLOW_S3_ACCESS_KEY" | grep -q readwrite; then
  mc admin policy attach local readwrite --user "$TRADEFLOW_S3_ACCESS_KEY"
fi

mc retention info --default local/audit
echo "minio-init: buckets lake, mlflow and audit are ready"
