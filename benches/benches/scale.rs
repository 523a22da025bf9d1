//! Producers at scale, in one process against the in-process endpoint:
//! `cargo bench -p kvs-benches --bench scale` (defaults: 200 streams at
//! 1 Mbit/s for 10 s; `KVS_SCALE_STREAMS`, `KVS_SCALE_MBPS`,
//! `KVS_SCALE_SECONDS` change them — 1000 streams is the target run).
//! Prints CPU seconds per stream-second, RSS per stream beyond the media
//! held, ACK latency p50/p99, and one summary line.
#![allow(clippy::print_stdout)]

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; nothing to parse.
    let cfg = kvs_benches::scale::ScaleConfig {
        streams: env("KVS_SCALE_STREAMS", 200),
        mbps: env("KVS_SCALE_MBPS", 1.0),
        seconds: env("KVS_SCALE_SECONDS", 10.0),
        fps: 30,
        workers: 2,
    };
    match kvs_benches::scale::run(cfg) {
        Ok(r) => {
            println!(
                "{} streams × {} Mbit/s × {} s: {:.2} CPU s ({:.1} % of one core), peak RSS +{:.0} KiB ({:.0} KiB media), {} frames put",
                cfg.streams,
                cfg.mbps,
                cfg.seconds,
                r.cpu_seconds,
                r.cpu_seconds / cfg.seconds * 100.0,
                r.rss_growth_kib,
                r.media_kib,
                r.frames_put
            );
            println!("{}", r.line());
        }
        Err(e) => {
            println!("scale run failed: {e}");
            std::process::exit(1);
        }
    }
}
