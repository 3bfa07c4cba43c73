#!/bin/sh
# Start a one-container SeaweedFS (master, volume, filer and S3 gateway) whose S3 gateway accepts
# one identity, taken from S3_ACCESS_KEY / S3_SECRET_KEY. Mounted read-only into the seaweedfs
# service of docker-compose.yaml and run with `sh`, so it needs no exec bit.
# Keys go into JSON as they are: keep them to letters, digits, '-', '_' and '.'.
set -eu

: "${S3_ACCESS_KEY:?S3_ACCESS_KEY is not set}"
: "${S3_SECRET_KEY:?S3_SECRET_KEY is not set}"
config="${S3_CONFIG_PATH:-/tmp/s3.json}"

umask 077
cat > "$config" <<JSON
{
  "identities": [
    {
      "name": "laion",
      "credentials": [{"accessKey": "${S3_ACCESS_KEY}", "secretKey": "${S3_SECRET_KEY}"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON

exec weed server \
    -dir="${WEED_DIR:-/data}" \
    -ip="${WEED_IP:-seaweedfs}" \
    -ip.bind=0.0.0.0 \
    -s3 \
    -s3.port="${S3_PORT:-8333}" \
    -s3.config="$config" \
    "$@"
