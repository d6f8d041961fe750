//! `loadgen`: the load benchmark of issue 6 (work in progress). Drives N concurrent calls
//! through a running gateway on loopback and measures the codec floor in the same run.

mod conference;
mod floor;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load benchmark of the gateway")]
struct Cli {
    /// Only measure the codec floor on this machine and print it.
    #[arg(long)]
    floor_only: bool,
    /// Remote speakers (Opus streams from the bridge) per call.
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Opus encoder complexity, as the gateway's media.opus_complexity.
    #[arg(long, default_value_t = 5)]
    complexity: u8,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let f = floor::measure(&floor::Work {
        speakers: cli.speakers,
        complexity: cli.complexity,
        bitrate: 20_000,
    })?;
    println!("{}", f.table());
    anyhow::ensure!(cli.floor_only, "only --floor-only is built so far");
    Ok(())
}
