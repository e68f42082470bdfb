//! Issue 9's slow-peer test: 200 silent connections and 200 connections sending one
//! byte a second, spread over the submission and IMAP ports (cleartext and implicit
//! TLS) and 40 loopback addresses. A normal client still logs in, sends an encrypted
//! message and receives it in IDLE with about the latency it had alone, and every slow
//! connection is dropped at its deadline (the login or TLS handshake deadline,
//! shortened to 8 s for the test) with the protocol's goodbye where there is a dialogue.
#![cfg(feature = "tokio")]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Silent and dripping connections each.
const SLOW: usize = 200;
/// Loopback addresses they come from (127.0.0.10 ...), 10 connections each.
const ADDRESSES: u8 = 40;
/// The login and handshake deadline of the test relay: long enough for all slow
/// connections to be open (up to 4 s on a loaded machine, SYNs may be retried) and the
/// normal rounds to run beside them.
const DEADLINE: Duration = Duration::from_secs(8);

/// How a slow connection ended.
#[derive(Debug)]
struct Ended {
    /// Time from connect to the relay closing it.
    after: Duration,
    /// What the relay said (the greeting, and the goodbye where there is a dialogue).
    said: String,
    port: SocketAddr,
}

/// One slow connection: connects from `from`, sends `drip` one byte a second (or
/// nothing), reads until the relay closes it. Gives up after `DEADLINE + 10 s`.
async fn slow(
    from: IpAddr,
    port: SocketAddr,
    drip: Option<&'static [u8]>,
    open: Arc<AtomicUsize>,
) -> Ended {
    let tcp = within(connect_from(from, port)).await.expect("connect");
    let start = Instant::now();
    open.fetch_add(1, Ordering::SeqCst);
    let (mut read, mut write) = tcp.into_split();
    // The write half stays open even for a silent one (dropping it would send FIN).
    let dripper = match drip {
        Some(script) => Ok(tokio::spawn(async move {
            for byte in script.iter().cycle().take(60) {
                if write.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })),
        None => Err(write),
    };
    let mut said = Vec::new();
    let reading = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ended = tokio::time::timeout(DEADLINE + Duration::from_secs(10), reading).await;
    let after = start.elapsed();
    open.fetch_sub(1, Ordering::SeqCst);
    match dripper {
        Ok(task) => task.abort(),
        Err(write) => drop(write),
    }
    assert!(ended.is_ok(), "{port}: still open {after:?} after connect");
    Ended {
        after,
        said: String::from_utf8_lossy(&said).into_owned(),
        port,
    }
}

/// The median of three normal rounds (each bounded: a round that takes over 2 s
/// fails the test by itself).
async fn median_round(relay: &Running, user: &str, password: &str) -> Duration {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let took = normal_round(relay, user, password).await;
        assert!(took < Duration::from_secs(2), "a round took {took:?}");
        rounds.push(took);
    }
    rounds.sort();
    rounds[1]
}

/// Lets this process hold the sockets of both ends (about 900).
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let want = limit.maximum.map_or(4096, |max| max.min(4096));
        if limit.current.is_some_and(|current| current < want) {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(want),
                    maximum: limit.maximum,
                },
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peers_do_not_slow_a_normal_client_and_are_dropped_at_their_deadline() {
    raise_fd_limit();
    let mut config = config();
    config.timeouts.login = DEADLINE;
    config.timeouts.tls_handshake = DEADLINE;
    // Ten connections per address: well within the per-IP limits.
    config.max_imap_connections_per_ip = Some(20);
    config.max_smtp_connections_per_ip = Some(20);
    let relay = start(config).await;
    let ports = relay.ports;
    let (user, password) = ("normal123@_chat.localhost", "password123");

    // Alone: the first round creates the account; the median of three is the baseline.
    normal_round(&relay, user, password).await;
    let alone = median_round(&relay, user, password).await;

    // The slow ones: silent on all four ports (on the TLS ports they never start the
    // handshake), dripping whole commands on the two cleartext ports.
    let open = Arc::new(AtomicUsize::new(0));
    let mut slow_ones = Vec::new();
    for i in 0..2 * SLOW {
        let from = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            10 + (i % ADDRESSES as usize) as u8,
        ));
        let (port, drip): (SocketAddr, Option<&'static [u8]>) = if i < SLOW {
            // Silent: a quarter on each port.
            match i % 4 {
                0 => (ports.submission, None),
                1 => (ports.submissions, None),
                2 => (ports.imap, None),
                _ => (ports.imaps, None),
            }
        } else if i % 2 == 0 {
            (ports.submission, Some(&b"NOOP\r\n"[..]))
        } else {
            (ports.imap, Some(&b"a NOOP\r\n"[..]))
        };
        slow_ones.push(tokio::spawn(slow(from, port, drip, open.clone())));
    }
    let opened = Instant::now();
    for _ in 0..200 {
        if open.load(Ordering::SeqCst) == 2 * SLOW {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open.load(Ordering::SeqCst),
        2 * SLOW,
        "all slow ones connected"
    );

    // With them: the same rounds, while every slow connection is still open.
    let loaded = median_round(&relay, user, password).await;
    assert_eq!(
        open.load(Ordering::SeqCst),
        2 * SLOW,
        "the round ran while all slow connections were open"
    );
    println!(
        "normal round (median of 3) alone {alone:?}, beside {} slow connections \
         {loaded:?} (all of them open {:?} before the last round ended)",
        2 * SLOW,
        opened.elapsed()
    );
    assert!(
        loaded < Duration::from_secs(2) && loaded < alone * 4 + Duration::from_millis(500),
        "alone {alone:?}, with slow peers {loaded:?}"
    );

    // Every slow one is dropped at its deadline, with a goodbye where there is a
    // dialogue.
    let mut latest = Duration::ZERO;
    for task in slow_ones {
        let ended = task.await.expect("slow connection task");
        latest = latest.max(ended.after);
        assert!(
            ended.after + Duration::from_millis(200) >= DEADLINE
                && ended.after <= DEADLINE + Duration::from_secs(3),
            "{} closed after {:?}",
            ended.port,
            ended.after
        );
        if ended.port == ports.submission {
            assert!(ended.said.contains("421 4.4.2"), "{:?}", ended.said);
        } else if ended.port == ports.imap {
            assert!(ended.said.contains("* BYE"), "{:?}", ended.said);
        } else {
            assert!(
                ended.said.is_empty(),
                "no TLS, no dialogue: {:?}",
                ended.said
            );
        }
    }
    println!("the last slow connection was dropped {latest:?} after it connected");

    // And the relay is as good as before.
    let after = normal_round(&relay, user, password).await;
    assert!(after < Duration::from_secs(2), "{after:?}");
    relay.stop().await;
}
