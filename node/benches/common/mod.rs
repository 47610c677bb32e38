//! Raw baselines and statistics shared by the node benchmarks: libp2p request-response between
//! two bare swarms and redb durable commits, measured in the same run as the figure they bound.
//!
//! This is `common/mod.rs` rather than `common.rs` (the house style) because Cargo would build
//! a `benches/common.rs` as a benchmark of its own.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};

const RAW_TABLE: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("raw");

/// A bare redb database: durable commits of one 400-byte record each.
pub(crate) struct RawDb {
    db: redb::Database,
    next_key: u64,
}

impl RawDb {
    /// A new database in `dir`.
    pub(crate) fn create(dir: &std::path::Path) -> anyhow::Result<RawDb> {
        Ok(RawDb { db: redb::Database::create(dir.join("raw.redb"))?, next_key: 0 })
    }

    /// Commits one record durably; returns how long it took.
    pub(crate) fn commit_one(&mut self) -> anyhow::Result<Duration> {
        let record = [7u8; 400];
        let start = Instant::now();
        let tx = self.db.begin_write()?;
        tx.open_table(RAW_TABLE)?.insert(self.next_key, record.as_slice())?;
        tx.commit()?;
        self.next_key += 1;
        Ok(start.elapsed())
    }
}

/// libp2p request-response between two bare swarms with the same framing and message size as
/// `/clawnet/deliver/1`, the client on the bench's first side and the server on its second (see
/// [`side_runtime`]): `samples` round trips one at a time, then `total` requests with
/// `in_flight` outstanding; returns (round trip p50 in microseconds, requests/s).
pub(crate) async fn raw_network(samples: usize, total: usize, in_flight: usize) -> anyhow::Result<(f64, f64)> {
    let (listening, address) = tokio::sync::oneshot::channel();
    let serving = side_runtime(Side::Second).spawn(raw_server(listening));
    let Ok((server_peer, address)) = address.await else {
        return Err(serving.await?.expect_err("the raw server stopped before listening"));
    };
    let measured = on(Side::First, async move {
        let mut client = raw_swarm()?;
        client.add_peer_address(server_peer, address);
        let payload = vec![3u8; 400];
        // Warm up, then one at a time.
        raw_exchange(&mut client, server_peer, &payload, 1, 1).await;
        let mut rtts = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            raw_exchange(&mut client, server_peer, &payload, 1, 1).await;
            rtts.push(start.elapsed());
        }
        let start = Instant::now();
        raw_exchange(&mut client, server_peer, &payload, total, in_flight).await;
        let per_s = total as f64 / start.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((micros(median_duration(rtts)), per_s))
    })
    .await;
    serving.abort();
    measured
}

/// The raw server: tells `listening` where it listens, then answers every request.
async fn raw_server(listening: tokio::sync::oneshot::Sender<(PeerId, Multiaddr)>) -> anyhow::Result<()> {
    let mut server = raw_swarm()?;
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let _ = listening.send((*server.local_peer_id(), address));
    loop {
        if let SwarmEvent::Behaviour(request_response::Event::Message {
            message: request_response::Message::Request { channel, .. },
            ..
        }) = server.select_next_some().await
        {
            let _ = server.behaviour_mut().send_response(channel, vec![1u8; 200]);
        }
    }
}

type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

fn raw_swarm() -> anyhow::Result<RawSwarm> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| {
            request_response::Behaviour::new(
                [(StreamProtocol::new("/bench/raw/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_max_concurrent_streams(512),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Sends `total` requests keeping `in_flight` outstanding; returns when all are answered.
async fn raw_exchange(client: &mut RawSwarm, server: PeerId, payload: &[u8], total: usize, in_flight: usize) {
    let (mut sent, mut answered) = (0, 0);
    while answered < total {
        while sent < total && sent - answered < in_flight {
            client.behaviour_mut().send_request(&server, payload.to_vec());
            sent += 1;
        }
        match client.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { .. },
                ..
            }) => answered += 1,
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("raw request failed: {error}")
            }
            _ => {}
        }
    }
}

/// Length-prefixed frames both ways, as `/clawnet/deliver/1` uses.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &res).await
    }
}

async fn read_frame<T: futures::AsyncRead + Unpin>(io: &mut T) -> std::io::Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: futures::AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> std::io::Result<()> {
    use futures::AsyncWriteExt;
    // One write, as the node's frames go (each write on a Yamux stream is a frame of its own).
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(frame);
    io.write_all(&bytes).await?;
    io.close().await
}

/// Runs `run_once` the number of times `--runs` asks for (default `default`), with tracing set
/// up, printing each run's result as it comes.
pub(crate) fn repeat<R: std::fmt::Display, F: Future<Output = anyhow::Result<R>>>(
    default: usize,
    run_once: impl Fn() -> F,
) -> anyhow::Result<Vec<R>> {
    let runs = runs_arg(default);
    init_tracing();
    let runtime = multi_thread(None)?;
    let mut results = Vec::new();
    for run in 1..=runs {
        let result = runtime.block_on(run_once())?;
        println!("run {run}: {result}");
        results.push(result);
    }
    Ok(results)
}

/// The two sides of a bench (two nodes, or the raw client and server) each run on a runtime of
/// their own, as two nodes run in two processes: a task of one side never runs on a worker of
/// the other, and a wake-up on one side never lands on the other's workers. Each has as many
/// workers as the machine has CPUs, as `clawnet run` does (`BENCH_WORKERS=N` gives each N).
/// `BENCH_SHARED_RUNTIME=1` puts both sides on the bench's own runtime instead, as these benches
/// did until 2026-12-05.
pub(crate) fn side_runtime(side: Side) -> tokio::runtime::Handle {
    static RUNTIMES: OnceLock<[tokio::runtime::Runtime; 2]> = OnceLock::new();
    if std::env::var_os("BENCH_SHARED_RUNTIME").is_some() {
        return tokio::runtime::Handle::current();
    }
    let runtimes = RUNTIMES.get_or_init(|| {
        let build = |name| multi_thread(Some(name)).expect("cannot start a runtime for the bench");
        [build("first-side"), build("second-side")]
    });
    runtimes[side as usize].handle().clone()
}

/// Which side of a bench: [`side_runtime`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// The sender, the asking node, the raw client.
    First = 0,
    /// The receiver, the asked node, the raw server.
    Second = 1,
}

/// Runs `work` on `side`'s runtime and waits for it.
pub(crate) async fn on<T: Send + 'static>(side: Side, work: impl Future<Output = T> + Send + 'static) -> T {
    match side_runtime(side).spawn(work).await {
        Ok(output) => output,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("a bench task did not finish: {err}"),
    }
}

/// A multi-threaded runtime with `BENCH_WORKERS` worker threads, or one per CPU.
fn multi_thread(name: Option<&'static str>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("BENCH_WORKERS").ok().and_then(|w| w.parse().ok()) {
        builder.worker_threads(workers);
    }
    if let Some(name) = name {
        builder.thread_name(name);
    }
    builder.enable_all().build()
}

/// `--runs N` from the command line, or `default`.
fn runs_arg(default: usize) -> usize {
    std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Logs to stderr when `RUST_LOG` is set.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn median_duration(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub(crate) fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// CPU time (user + system) this process used so far: every thread's, to the nanosecond.
pub(crate) fn cpu_time() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(spent.tv_sec.try_into().unwrap_or(0), spent.tv_nsec.try_into().unwrap_or(0))
}
