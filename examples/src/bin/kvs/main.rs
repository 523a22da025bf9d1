//! `kvs`: the command-line tool of the kvs library.
//!
//! Run: `cargo run --release -p kvs-examples --bin kvs -- --help`
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod inspect;
mod mux;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tools for Amazon Kinesis Video Streams media.
#[derive(Parser)]
#[command(name = "kvs", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Summarise a Matroska file (GetMedia output, a PutMedia body, any MKV/WebM).
    Inspect {
        /// The file to read.
        file: PathBuf,
        /// Print exactly one JSON object instead of the human summary.
        #[arg(long)]
        json: bool,
    },
    /// Mux an Annex-B H.264/H.265 elementary stream into a KVS-style MKV.
    Mux {
        /// `.h264`/`.264` (H.264) or `.h265`/`.hevc` (H.265) Annex-B input.
        input: PathBuf,
        /// Output Matroska file.
        #[arg(short, long)]
        output: PathBuf,
        /// Frames per second of the video.
        #[arg(long, default_value_t = 25.0)]
        fps: f64,
        /// ADTS AAC audio to interleave.
        #[arg(long)]
        audio: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Inspect { file, json } => inspect::run(&file, json),
        Cmd::Mux {
            input,
            output,
            fps,
            audio,
        } => mux::run(&input, &output, fps, audio.as_deref()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvs: {e}");
            ExitCode::FAILURE
        }
    }
}
