//! Evaluates the `anomaly` policy on a synthetic hospital week: generates staff, patients,
//! rotas and normal access (seeded, deterministic), injects labelled misuse of every kind
//! the module detects, replays it all through the real engine with the compiled module (no
//! network), and prints per-detector precision and recall and the confusion of truth
//! against action, as plain and markdown tables.
//!
//! ```sh
//! cargo run --release -p ehrgate --example anomaly-eval
//! cargo run --release -p ehrgate --example anomaly-eval -- --unexplained-rate 0.06
//! cargo run --release -p ehrgate --example anomaly-eval -- --care-team-cost
//! ```
//!
//! The generator's assumptions are listed in the README section "Rate limiting and anomaly
//! detection".

mod config;
mod cost;
mod hospital;
mod misuse;
mod replay;
mod report;
mod rng;
mod traffic;

use clap::Parser;

use hospital::{Hospital, MINUTE};
use rng::Rng;
use traffic::Normal;

#[derive(Parser)]
#[command(about = "Replay a synthetic hospital week through the anomaly policy")]
struct Args {
    /// Seed of the generator; the same seed gives the same week.
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Share of clinical chart opens followed by a legitimate open the care-team file does
    /// not explain (consults, cross-cover).
    #[arg(long, default_value_t = 0.02)]
    unexplained_rate: f64,
    /// Incidents injected per misuse kind.
    #[arg(long, default_value_t = 12)]
    incidents: usize,
    /// How often the operator re-exports the care-team file and reloads (minutes).
    #[arg(long, default_value_t = 15)]
    refresh_minutes: u64,
    /// The sandbox deadline per call (ms). The gateway's default is 5; the evaluation's is
    /// roomier so that a busy machine does not turn slow calls into faults, which would
    /// measure the machine rather than the detectors. The timing line shows the real cost.
    #[arg(long, default_value_t = 100)]
    deadline_ms: u64,
    /// Also print where each detector's false alerts come from, and the missed incidents.
    #[arg(long)]
    false_alerts: bool,
    /// Instead of the evaluation, measure what the size of `care_teams` costs per request.
    #[arg(long)]
    care_team_cost: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.care_team_cost {
        return cost::measure();
    }
    if !(0.0..=1.0).contains(&args.unexplained_rate) || args.refresh_minutes == 0 {
        anyhow::bail!("`--unexplained-rate` must be 0 to 1 and `--refresh-minutes` above 0");
    }
    let rng = Rng::new(args.seed);
    let hospital = Hospital::generate(&rng);
    let mut events = Normal {
        hospital: &hospital,
        rng: rng.fork(2),
        consults: rng.fork(3),
        unexplained_rate: args.unexplained_rate,
        events: Vec::new(),
    }
    .generate();
    let incidents = misuse::inject(&hospital, &rng, args.incidents, &mut events);
    events.sort_by_key(|e| (e.time, e.staff));

    let replay = replay::replay(
        &hospital,
        &events,
        args.refresh_minutes * MINUTE,
        args.deadline_ms,
    )?;

    let misuse = events.iter().filter(|e| e.labels != 0).count();
    println!(
        "seed {}: {} staff, {} ward stays, {} appointments, {} emergency visits, {} VIPs",
        args.seed,
        hospital.staff.len(),
        hospital.stays.len(),
        hospital.appointments.len(),
        hospital.ed_visits.len(),
        hospital.vips.len()
    );
    println!(
        "{} requests ({} normal, {} misuse in {} incidents); unexplained-rate {}, care-team file reloaded every {} min ({} loads, up to {} KB of config)",
        events.len(),
        events.len() - misuse,
        misuse,
        incidents.len(),
        args.unexplained_rate,
        args.refresh_minutes,
        replay.reloads,
        replay.largest_config_bytes / 1024
    );
    println!(
        "evaluation (fresh instance, init with the config, evaluate): mean {:.0} µs, slowest {:.0} µs",
        replay.evaluation_time.as_secs_f64() * 1e6 / events.len().max(1) as f64,
        replay.slowest.as_secs_f64() * 1e6
    );
    if !replay.faults.is_empty() {
        println!(
            "{} requests not decided by the module (the gateway answers them with `policy-error`), first: request {}: {}",
            replay.faults.len(),
            replay.faults[0].request,
            replay.faults[0].reason
        );
    }
    let tables = [
        report::detectors(&events, &replay.outcomes, &incidents),
        report::incidents(&events, &replay.outcomes, &incidents),
        report::confusion(&events, &replay.outcomes),
    ];
    for table in &tables {
        println!("\n{}", table.plain());
    }
    println!("\n{}", report::review_queue(&events, &replay.outcomes));
    if args.false_alerts {
        let table = report::false_alerts(&hospital, &events, &replay.outcomes);
        println!("\n{}", table.plain());
        for line in report::missed(&hospital, &events, &replay.outcomes, &incidents) {
            println!("missed: {line}");
        }
    }
    println!("\nmarkdown:\n");
    for table in &tables {
        println!("{}\n", table.markdown());
    }
    Ok(())
}
