//! The real `authzd` binary as a child process, probed from outside: its log, its metrics
//! endpoint, raw TCP and hand-written HTTP/2 frames where a gRPC client would hide what the
//! server does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// Longest any awaited state may take before a test gives up. Generous: it only bounds a
/// failing test, it is never the thing measured.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running `authzd serve` with its metrics endpoint; killed when dropped.
pub struct Authzd {
    pub child: tokio::process::Child,
    pub port: u16,
    pub metrics_port: u16,
    log: Arc<Mutex<String>>,
}

impl Authzd {
    /// Starts `authzd serve` with `args` on free ports, and waits until its metrics endpoint
    /// answers (the gRPC listener is bound before it). No gRPC connection is made.
    pub async fn start(args: &[&str]) -> Authzd {
        let port = free_port();
        let metrics_port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let d = Authzd {
            child,
            port,
            metrics_port,
            log,
        };
        eventually("authzd serves its metrics", || async {
            scrape(d.metrics_port).await
        })
        .await;
        d
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new gRPC channel (its own connection).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The value of one series (`name{labels}` as exposed); 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = scrape(self.metrics_port).await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `series` reaches at least `value`.
    pub async fn metric_reaches(&self, series: &str, value: f64) {
        eventually(&format!("{series} >= {value}"), || async {
            (self.metric(series).await >= value).then_some(())
        })
        .await
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// `GET /metrics`, or `None` while nothing answers.
async fn scrape(port: u16) -> Option<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

pub const MAGIC: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const PING: u8 = 6;
pub const SETTINGS: u8 = 4;
const ACK: u8 = 1;

/// An HTTP/2 frame: type, flags, payload.
pub type Frame = (u8, u8, Vec<u8>);

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

/// A TCP connection to the server that has sent nothing yet.
pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// A connection that has sent the whole client preface (magic and an empty SETTINGS frame).
pub async fn h2_connect(port: u16) -> TcpStream {
    let mut tcp = connect(port).await;
    let mut preface = MAGIC.to_vec();
    preface.extend(frame(SETTINGS, 0, &[]));
    tcp.write_all(&preface).await.unwrap();
    tcp
}

/// The next frame, or `None` once the server has closed the connection.
pub async fn next_frame(tcp: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; 9];
    tcp.read_exact(&mut header).await.ok()?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((header[3], header[4], payload))
}

/// Reads frames, acknowledging the server's SETTINGS (and, when `answer_pings`, its PINGs),
/// until one satisfies `want`; `None` if the server closes the connection first.
pub async fn until_frame(
    tcp: &mut TcpStream,
    answer_pings: bool,
    want: impl Fn(&Frame) -> bool,
) -> Option<Frame> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let f = next_frame(tcp).await?;
            if f.0 == SETTINGS && f.1 & ACK == 0 {
                tcp.write_all(&frame(SETTINGS, ACK, &[])).await.ok()?;
            }
            if answer_pings && f.0 == PING && f.1 & ACK == 0 {
                tcp.write_all(&frame(PING, ACK, &f.2)).await.ok()?;
            }
            if want(&f) {
                return Some(f);
            }
        }
    })
    .await
    .expect("the awaited frame or the close came in time")
}

/// Sends a PING and waits for its acknowledgement: true when the connection is alive.
pub async fn answers_ping(tcp: &mut TcpStream) -> bool {
    let data = *b"authzd!?";
    if tcp.write_all(&frame(PING, 0, &data)).await.is_err() {
        return false;
    }
    until_frame(tcp, true, |f| f.0 == PING && f.1 & ACK != 0 && f.2 == data)
        .await
        .is_some()
}

/// Waits until the server closes the connection (end of stream or reset), discarding whatever
/// it sends meanwhile.
pub async fn wait_closed(tcp: &mut TcpStream) {
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection in time")
}
