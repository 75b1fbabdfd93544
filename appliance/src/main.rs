//! The `appliance` command: station service, one-shot inspection, demo, and tools.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "appliance", version, about = "Visual-inspection edge appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic parts with ground truth and judged standards.
    Synth {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        /// Number of parts.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Seed: the same seed writes the same parts.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Standards written and judged per part.
        #[arg(long, default_value_t = 2)]
        standards_per_part: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Synth {
            out,
            count,
            seed,
            standards_per_part,
        } => {
            let manifest =
                vision::synth::dataset::write_dataset(&out, count, seed, standards_per_part)
                    .with_context(|| format!("writing synthetic parts to {}", out.display()))?;
            println!("wrote {count} parts to {}", manifest.display());
        }
    }
    Ok(())
}
