#!/bin/sh
# Uses every secret: echoes them (the build log must mask them) and records their hashes (proof of receipt).
set -eu
echo "api token: $API_TOKEN"
echo "db password: $DB_PASSWORD"
echo "tls key:"; cat /etc/app/tls.key
mkdir -p /etc
{
  printf 'api_token=%s\n' "$(printf '%s' "$API_TOKEN" | sha256sum | cut -d' ' -f1)"
  printf 'db_password=%s\n' "$(printf '%s' "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)"
  printf 'tls_key=%s\n' "$(sha256sum < /etc/app/tls.key | cut -d' ' -f1)"
  printf 'tls_key_mode=%s\n' "$(stat -c %a /etc/app/tls.key)"
} > /etc/secret-receipt
