#!/usr/bin/env bash
# Debian's Dovecot on loopback as the reference for imaptest (compliance suite and stress
# mode), from its own config in a temporary directory; nothing of the system's Dovecot
# is used or started.
#
#   load/imaptest/dovecot.sh start   # IMAPS on 127.0.0.1:$DOVECOT_IMAPS_PORT (4993)
#   load/imaptest/dovecot.sh stop    # by the master's PID
#
# Any login of the form local@domain is accepted with any password (static passdb,
# nopassword), like a chatmail relay creating accounts on first login. Maildir storage
# under $DOVECOT_DIR/mail, owned by the system user `imaptestvmail` (created if missing).
# Needs root and `apt-get install dovecot-imapd`.
set -eu
DIR=${DOVECOT_DIR:-/tmp/imaptest-dovecot}
PORT=${DOVECOT_IMAPS_PORT:-4993}
USER_NAME=imaptestvmail
CONF=$DIR/dovecot.conf

start() {
    command -v dovecot >/dev/null || { echo "dovecot is not installed" >&2; exit 1; }
    id "$USER_NAME" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin "$USER_NAME"
    mkdir -p "$DIR/run" "$DIR/state" "$DIR/mail"
    chown "$USER_NAME:$USER_NAME" "$DIR/mail"
    if [ ! -f "$DIR/cert.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
            -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
    fi
    cat >"$CONF" <<CONF
instance_name = imaptest-dovecot
base_dir = $DIR/run
state_dir = $DIR/state
log_path = $DIR/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$DIR/cert.pem
ssl_key = <$DIR/key.pem
auth_mechanisms = plain
mail_location = maildir:$DIR/mail/%d/%n
mail_uid = $USER_NAME
mail_gid = $USER_NAME
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=$USER_NAME gid=$USER_NAME home=$DIR/mail/%d/%n
}
namespace inbox {
  inbox = yes
  separator = .
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PORT
    ssl = yes
  }
  process_min_avail = 2
}
CONF
    dovecot -c "$CONF"
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            echo "dovecot ready: imaps 127.0.0.1:$PORT (pid $(cat "$DIR/run/master.pid"))"
            return 0
        fi
        sleep 0.1
    done
    echo "dovecot did not come up; see $DIR/dovecot.log" >&2
    exit 1
}

stop() {
    if [ -f "$DIR/run/master.pid" ]; then
        pid=$(cat "$DIR/run/master.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$DIR/run/master.pid"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
