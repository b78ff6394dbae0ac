#!/usr/bin/env bash
# Starts a throwaway Postfix instance for the delivery tests:
#   start.sh <dir> <port> [starttls|plain]
# Everything lives under <dir> (config in <dir>/etc, queue in <dir>/spool, log in <dir>/maillog).
# It listens on 127.0.0.1:<port> only and delivers every message for @archive.test into the
# Maildir <dir>/mail/journal/ (new/ holds one file per delivered message). `starttls` (default)
# offers STARTTLS with a fresh self-signed certificate for "localhost" (<dir>/etc/cert.pem, which
# the tests trust as their CA); `plain` offers no TLS at all. Needs root (Postfix drops to its
# own `postfix` user). Stop it with stop.sh <dir>.
set -euo pipefail
DIR="$(cd "$1" && pwd)"; PORT="$2"; TLS="${3:-starttls}"
POSTFIX="${OFFCHANNEL_POSTFIX:-/usr/sbin/postfix}"
chmod 755 "$DIR"
mkdir -p "$DIR/etc" "$DIR/spool" "$DIR/data" "$DIR/mail/journal"
MAIL_UID="$(id -u nobody)"; MAIL_GID="$(id -g nobody)"
chown -R "$MAIL_UID:$MAIL_GID" "$DIR/mail"
chown postfix "$DIR/data"
# Debian's master.cf with every service out of chroot, and smtpd on the loopback port only.
awk -v port="$PORT" '
  /^smtp[ \t]+inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
  /^[a-z]/ && NF >= 8 { $5 = "n" }
  { print }
' /etc/postfix/master.cf > "$DIR/etc/master.cf"
cat > "$DIR/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $DIR/spool
data_directory = $DIR/data
mail_owner = postfix
myhostname = journal.test
mydomain = journal.test
myorigin = journal.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = $DIR
maillog_file = $DIR/maillog
smtputf8_enable = no
message_size_limit = 52428800
virtual_mailbox_limit = 0
virtual_mailbox_domains = archive.test
virtual_mailbox_base = $DIR/mail
virtual_mailbox_maps = static:journal/
virtual_uid_maps = static:$MAIL_UID
virtual_gid_maps = static:$MAIL_GID
virtual_minimum_uid = 1
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
CONF
if [ "$TLS" = starttls ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$DIR/etc/key.pem" -out "$DIR/etc/cert.pem" 2>/dev/null
  chmod 600 "$DIR/etc/key.pem"
  cat >> "$DIR/etc/main.cf" <<CONF
smtpd_tls_security_level = may
smtpd_tls_cert_file = $DIR/etc/cert.pem
smtpd_tls_key_file = $DIR/etc/key.pem
CONF
else
  echo "smtpd_tls_security_level = none" >> "$DIR/etc/main.cf"
fi
"$POSTFIX" -c "$DIR/etc" set-permissions >/dev/null 2>&1 || true
fail() { echo "start.sh: postfix $1 failed (every directory above $DIR must be searchable by the postfix user):" >&2; tail -5 "$DIR/maillog" >&2 2>/dev/null; exit 1; }
"$POSTFIX" -c "$DIR/etc" check || fail check
"$POSTFIX" -c "$DIR/etc" start || fail start
