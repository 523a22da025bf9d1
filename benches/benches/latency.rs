//! Frame latency from `put_frame` to the live consumer over the
//! in-process local endpoint, at 25 fps with 2 s fragments: frame by frame
//! (each block streamed as it is put and read as it arrives) beside
//! fragment by fragment (each frame when its whole fragment has come), in
//! the same run, video only and video + AAC. `cargo bench -p kvs-benches
//! --bench latency` (`KVS_LATENCY_SECONDS`, default 20). Real time, not
//! criterion: latency is what is measured, not CPU.
#![allow(clippy::print_stdout)]

fn main() {
    let seconds = std::env::var("KVS_LATENCY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    for audio in [false, true] {
        let cfg = kvs_benches::latency::LatencyConfig {
            seconds,
            audio,
            mbps: 2.0,
        };
        match kvs_benches::latency::run(cfg) {
            Ok(r) => println!("{}", r.line()),
            Err(e) => {
                println!("latency run failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
