#!/usr/bin/env bash
# Reference mail server for the latency benchmarks: Debian's Postfix + Dovecot on 127.0.0.1.
#
#   load/latency/postfix_dovecot.sh install   # apt-get install postfix dovecot-imapd dovecot-lmtpd
#   load/latency/postfix_dovecot.sh start     # configure into $BENCH_PD_DIR and start both
#   load/latency/postfix_dovecot.sh status
#   load/latency/postfix_dovecot.sh stop      # stop both (the state directory stays)
#
# Layout (everything under $BENCH_PD_DIR, default /tmp/bench-postfix-dovecot):
#   Postfix  submissions (implicit TLS, Dovecot SASL)  127.0.0.1:$BENCH_PD_SUBMISSIONS_PORT (3465)
#            SMTP (MX, no auth)                         127.0.0.1:$BENCH_PD_SMTP_PORT (3025)
#   Dovecot  IMAPS (implicit TLS)                       127.0.0.1:$BENCH_PD_IMAPS_PORT (3993)
#            LMTP on a unix socket in Postfix's queue directory (virtual_transport)
# Mail domain $BENCH_PD_DOMAIN (bench.localhost): any local part logs in with the password
# $BENCH_PD_PASSWORD (static passdb), like a chatmail relay creating accounts on first login.
# Maildir storage under $BENCH_PD_DIR/mail, owned by the system user benchvmail.
#
# Dovecot runs with its stock notification behaviour (inotify plus its built-in delay before
# an IDLE session reports new mail): that behaviour is what the benchmark compares against.
# No systemd: Postfix starts with `postfix -c DIR start`, Dovecot with `dovecot -c FILE`.
set -eu

DIR=${BENCH_PD_DIR:-/tmp/bench-postfix-dovecot}
DOMAIN=${BENCH_PD_DOMAIN:-bench.localhost}
PASSWORD=${BENCH_PD_PASSWORD:-benchpassword}
SUBMISSIONS_PORT=${BENCH_PD_SUBMISSIONS_PORT:-3465}
SMTP_PORT=${BENCH_PD_SMTP_PORT:-3025}
IMAPS_PORT=${BENCH_PD_IMAPS_PORT:-3993}
MAIL_USER=benchvmail

PF_ETC=$DIR/postfix/etc
PF_SPOOL=$DIR/postfix/spool
DC_CONF=$DIR/dovecot/dovecot.conf

die() {
    echo "postfix_dovecot.sh: $*" >&2
    exit 1
}

install_packages() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postfix dovecot-imapd dovecot-lmtpd openssl
}

write_config() {
    command -v postfix >/dev/null || die "postfix is not installed (run: $0 install)"
    command -v dovecot >/dev/null || die "dovecot is not installed (run: $0 install)"
    if ! getent passwd "$MAIL_USER" >/dev/null; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --user-group "$MAIL_USER"
    fi
    mkdir -p "$PF_ETC" "$PF_SPOOL" "$DIR/postfix/data" "$DIR/tls" \
        "$DIR/dovecot/run" "$DIR/dovecot/state" "$DIR/mail"
    chown "$MAIL_USER:$MAIL_USER" "$DIR/mail"
    chown postfix "$DIR/postfix/data"

    if [ ! -s "$DIR/tls/cert.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
            -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN,IP:127.0.0.1" \
            -keyout "$DIR/tls/key.pem" -out "$DIR/tls/cert.pem" 2>/dev/null
        chmod 600 "$DIR/tls/key.pem"
    fi

    cat >"$PF_ETC/main.cf" <<EOF
# Written by load/latency/postfix_dovecot.sh: a loopback-only Postfix for benchmarks.
compatibility_level = 3.6
queue_directory = $PF_SPOOL
data_directory = $DIR/postfix/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = $DIR/postfix/postfix.log
maillog_file_prefixes = $DIR/postfix
myhostname = $DOMAIN
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
message_size_limit = 31457280
# Every address of the bench domain is a Dovecot mailbox, delivered over LMTP.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = static:OK
virtual_transport = lmtp:unix:private/dovecot-lmtp
smtpd_tls_cert_file = $DIR/tls/cert.pem
smtpd_tls_key_file = $DIR/tls/key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
EOF

    # Debian's stock services, none chrooted (the chroot would need copies of /etc files).
    cat >"$PF_ETC/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SUBMISSIONS_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

    cat >"$DC_CONF" <<EOF
# Written by load/latency/postfix_dovecot.sh: a loopback-only Dovecot for benchmarks.
instance_name = bench-dovecot
base_dir = $DIR/dovecot/run
state_dir = $DIR/dovecot/state
log_path = $DIR/dovecot/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <$DIR/tls/cert.pem
ssl_key = <$DIR/tls/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
mail_location = maildir:$DIR/mail/%d/%n
mail_uid = $MAIL_USER
mail_gid = $MAIL_USER
first_valid_uid = 1
postmaster_address = postmaster@$DOMAIN
default_login_user = dovenull
default_internal_user = dovecot
# Any local part of the bench domain with the one bench password.
passdb {
  driver = static
  args = password=$PASSWORD
}
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_USER home=$DIR/mail/%d/%n
}
namespace inbox {
  inbox = yes
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
service lmtp {
  unix_listener $PF_SPOOL/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener $PF_SPOOL/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
}

start() {
    write_config
    # `postfix check` creates the queue directories with their owners and modes.
    postfix -c "$PF_ETC" check
    if postfix -c "$PF_ETC" status 2>/dev/null; then
        postfix -c "$PF_ETC" reload
    else
        postfix -c "$PF_ETC" start
    fi
    if dovecot_running; then
        doveadm -c "$DC_CONF" reload
    else
        dovecot -c "$DC_CONF"
    fi
    # Wait until both listeners accept connections (bounded: 10 s).
    i=0
    while [ $i -lt 100 ]; do
        if port_open "$SUBMISSIONS_PORT" && port_open "$IMAPS_PORT"; then
            echo "postfix+dovecot ready: submissions 127.0.0.1:$SUBMISSIONS_PORT," \
                "imaps 127.0.0.1:$IMAPS_PORT, domain $DOMAIN, password $PASSWORD"
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    die "listeners did not come up; see $DIR/postfix/postfix.log and $DIR/dovecot/dovecot.log"
}

dovecot_running() {
    [ -f "$DIR/dovecot/run/master.pid" ] && kill -0 "$(cat "$DIR/dovecot/run/master.pid")" 2>/dev/null
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop() {
    if [ -f "$PF_ETC/main.cf" ]; then
        postfix -c "$PF_ETC" stop || true
    fi
    if [ -f "$DC_CONF" ]; then
        doveadm -c "$DC_CONF" stop 2>/dev/null || true
    fi
}

status() {
    if [ -f "$PF_ETC/main.cf" ]; then postfix -c "$PF_ETC" status || true; fi
    if dovecot_running; then
        echo "dovecot is running (pid $(cat "$DIR/dovecot/run/master.pid"))"
    else
        echo "dovecot is not running"
    fi
}

case ${1:-} in
install) install_packages ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
