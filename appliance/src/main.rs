//! The `appliance` command: the station service, one-shot inspection, the
//! demo, configuration checks, the synthetic line and evaluation.

use std::path::{Path, PathBuf};

use anyhow::Context;
use appliance::{eval, pipeline};
use clap::{Parser, Subcommand};
use firmware_config::{Loader, StationConfig};

#[derive(Parser)]
#[command(
    name = "appliance",
    version,
    about = "Visual-inspection edge appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the station: cameras, model, store, MQTT.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the plant server: the review UI, API and fleet page over the
    /// plant's shared database and broker, for every station.
    Plant {
        #[arg(long)]
        config: PathBuf,
    },
    /// Review UI accounts: `appliance user add --config FILE NAME --role admin`.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The review list benchmark: N synthetic verdicts, list page timings (JSON).
    BenchReview {
        #[arg(long, default_value_t = 1_000_000)]
        verdicts: u64,
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Where the benchmark database goes (replaced).
        #[arg(long, default_value = "target/bench-review")]
        dir: PathBuf,
        /// Benchmark on this PostgreSQL server instead (a database
        /// `appliance_bench_review` is made afresh there), e.g.
        /// postgres://postgres@127.0.0.1/postgres
        #[arg(long)]
        postgres: Option<String>,
        /// With --postgres: keep the benchmark database when it already
        /// holds --verdicts verdicts, and only time the pages.
        #[arg(long)]
        reuse: bool,
    },
    /// The plant load test: station processes on the synthetic line sharing
    /// one PostgreSQL and a private Mosquitto, with a plant server (JSON).
    BenchPlant {
        #[arg(long, default_value_t = 8)]
        stations: usize,
        /// Parts per second of each station's synthetic camera.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// A PostgreSQL server (the database appliance_bench_plant is made afresh).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1/postgres")]
        postgres: String,
        #[arg(long, default_value = "models/reference")]
        package: PathBuf,
        #[arg(long, default_value = "config/demo/standards/housing.txt")]
        standard: PathBuf,
        #[arg(long, default_value = "fp32")]
        precision: String,
        /// Stations run the stand-in engine (model.stand_in: no graph, each
        /// part judged from the defects drawn on it): a load test of the
        /// shared services at rates this machine's model cannot reach.
        #[arg(long)]
        stand_in: bool,
        /// Each station's camera paints this many parts once and replays
        /// them, so painting does not take the CPU under test (0: paint
        /// every part).
        #[arg(long, default_value_t = 64)]
        replay: usize,
        /// Kill station s-0 (SIGKILL) this many seconds in, and start it again.
        #[arg(long)]
        kill_at: Option<u64>,
        /// Restart the broker this many seconds in.
        #[arg(long)]
        broker_restart_at: Option<u64>,
        #[arg(long, default_value = "target/bench-plant")]
        dir: PathBuf,
    },
    /// Reviewed verdicts as fine-tuning data (`toolchain.finetune --reviews DIR`).
    Export {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Only reviews made at or after this time (RFC 3339).
        #[arg(long, default_value = "")]
        since: String,
    },
    /// API tokens for reading verdicts from the MES.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run the synthetic line through the station pipeline and say how to watch it.
    Demo {
        #[arg(long, default_value = "config/demo/station.toml")]
        config: PathBuf,
    },
    /// Judge pictures against a standard: one file prints its verdict JSON;
    /// several files or folders (walked) print one JSON line per picture.
    Inspect(InspectArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Inspection standards: how each clause reads before it goes live.
    Standard {
        #[command(subcommand)]
        action: StandardAction,
    },
    /// Write synthetic parts with ground truth and judged standards.
    Synth(SynthArgs),
    /// Write the synthetic "new line" (a material and defect kinds the
    /// reference model never saw) as a plant hands it over for `finetune`:
    /// class folders with masks and standard.txt, plus a held-out split.
    SynthPlant {
        /// Class folders (good/, burr/, porosity/) and standard.txt go here.
        #[arg(long)]
        out: PathBuf,
        /// The held-out split (images/ + manifest.jsonl) goes here.
        #[arg(long)]
        heldout: PathBuf,
        #[arg(long, default_value_t = 50)]
        per_class: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Score the model on a synthetic dataset through the appliance's own engine.
    Eval(EvalArgs),
    /// Whole-pipeline benchmark: K cameras -> batching -> engine -> SQLite ->
    /// MQTT; prints throughput, latency, CPU and memory as JSON.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct SynthArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The same seed writes the same parts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    standards_per_part: usize,
    /// Languages the standards are written in, used in turn (en, zh).
    #[arg(long, value_delimiter = ',', default_value = "en,zh")]
    languages: Vec<String>,
    /// Use the held-out phrasings (evaluation sets) instead of the training ones.
    #[arg(long)]
    heldout: bool,
    /// Add after each standard a twin that differs in the one clause
    /// that decides, so the decision flips.
    #[arg(long)]
    counterfactuals: bool,
    /// Which generator writes the standards: v1 (the templates the
    /// reference model was trained on) or v2 (composed wording).
    #[arg(long, default_value = "v1")]
    wording: String,
    /// Judge every part under each hand-written standard in this folder
    /// (`NN-name.{en,zh}.txt` with its truth in `NN-name.{en,zh}.toml`)
    /// instead of writing standards; for evaluation only.
    #[arg(long)]
    standards_from: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InspectArgs {
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The standard's text file.
    #[arg(long)]
    standard: PathBuf,
    /// Model package folder (default: the configuration's, else the
    /// installed reference model, else the one beside this build).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Station configuration for model settings and calibration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Calibration, millimetres per pixel.
    #[arg(long, default_value_t = 0.1)]
    mm_per_px: f64,
    /// Model graphs to run: fp32 or int8 (default: the configuration's).
    #[arg(long, value_parser = ["fp32", "int8"])]
    precision: Option<String>,
    /// Pictures judged together.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Folder written by `appliance synth`.
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
    /// Model graphs to run: fp32 or int8 (default: the configuration's).
    #[arg(long, value_parser = ["fp32", "int8"])]
    precision: Option<String>,
    /// Also record the figures in the package's model.toml as
    /// `[evaluation.appliance.NAME.<precision>]`, with the command that
    /// made the data (`--data-command`).
    #[arg(long)]
    write: Option<String>,
    #[arg(long, default_value = "")]
    data_command: String,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Station configuration (model, recipe, batching, broker).
    #[arg(long, default_value = "config/demo/station.toml")]
    config: PathBuf,
    #[arg(long, default_value_t = 400)]
    frames: usize,
    #[arg(long, default_value_t = 4)]
    cameras: usize,
    /// Offered load in parts per second over all cameras (default: as
    /// fast as the pipeline takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Keep feeding for this many seconds instead of a frame count (soak).
    #[arg(long)]
    duration_s: Option<f64>,
    /// fp32 or int8 (default: the configuration's).
    #[arg(long)]
    precision: Option<String>,
    #[arg(long)]
    max_batch: Option<usize>,
    #[arg(long)]
    max_wait_ms: Option<f64>,
    /// Broker URL; the station then connects out to it (default: the configuration's broker).
    #[arg(long)]
    mqtt: Option<String>,
    /// Distinct synthetic parts, cycled.
    #[arg(long, default_value_t = 64)]
    distinct: usize,
    /// Tight-loop rounds measuring the model's own compute.
    #[arg(long, default_value_t = 60)]
    compute_rounds: usize,
    /// Also write the frame set and standard here (input of bench/baseline.py).
    #[arg(long)]
    export: Option<PathBuf>,
    /// Run this model package as a candidate in shadow mode for the whole
    /// run, to measure what it costs the line.
    #[arg(long)]
    shadow: Option<PathBuf>,
    /// Run the station as deployed, with hot-folder cameras: the bench
    /// renames PNG files into their folders and hears the results over
    /// MQTT (latency from rename to result).
    #[arg(long)]
    hot_folder: bool,
    /// The hot folders' scan interval (with --hot-folder).
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user (or set a new password and role, which ends its
    /// sessions); the password is read from the first line of standard
    /// input, never from the command line.
    Add {
        #[arg(long)]
        config: PathBuf,
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Stop a user from signing in; its sessions end at once.
    Disable {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// Remove a user and its sessions (its reviews keep its name).
    Remove {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// Every user with role, creation time and whether disabled.
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create an API token for the MES (printed once; only its hash is kept).
    Add {
        #[arg(long)]
        config: PathBuf,
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// How long it works (`90d`, `12h`), or `never` to last until revoked.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revoke a token: it stops working at once (the name is not reused).
    Revoke {
        #[arg(long)]
        config: PathBuf,
        name: String,
    },
    /// Every token with role, creation, expiry and revocation (never the
    /// token itself).
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum StandardAction {
    /// Print every clause with its reading; exit 1 when some clause is not
    /// read with confidence, 2 when the file has no numbered clause.
    Check {
        file: PathBuf,
        /// Model package whose defect words are read (default: as `inspect`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Compile standards as a model that reads compiled standards is given
    /// them: one JSON line `{"text": …}` per standard on stdin, one line
    /// `{"text": …, "clause_of": […]}` (`"text": null` when read as written)
    /// per standard on stdout. The model toolchain scores such models
    /// through it.
    Compile {
        /// Model package (default: as `inspect`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a station file and explain what is wrong.
    Check { file: PathBuf },
    /// Print the commented default configuration.
    Default,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The embedded broker (rumqttd) logs every client disconnect as an
        // error; by default only its own start-up line (ours) is shown.
        // `RUST_LOG=info,rumqttd=info` brings its log back.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Where a model package is looked for when none is named: the installed
/// reference model, then the one in the source tree this binary was built
/// in (`target/*/appliance` -> `models/reference`), then the working folder.
fn default_model() -> anyhow::Result<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/share/appliance/models/reference")];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(3) {
            candidates.push(up.join("models/reference"));
            candidates.push(up.join("share/appliance/models/reference"));
        }
    }
    candidates.push(PathBuf::from("models/reference"));
    candidates
        .iter()
        .find(|c| c.join("model.toml").is_file())
        .map(|c| firmware_config::absolute(c))
        .with_context(|| {
            let list: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            format!(
                "no model package found (looked in {}); name one with --model DIR",
                list.join(", ")
            )
        })
}

/// Configuration for one-shot commands: the given file, else defaults with
/// the model package overridden, without requiring station files to exist.
fn tool_config(config: Option<&Path>, model: Option<PathBuf>) -> anyhow::Result<StationConfig> {
    let mut loader = Loader::new(config);
    loader.check_files = config.is_some();
    let mut cfg = loader.load()?;
    if let Some(m) = model {
        cfg.model.package = m;
    } else if config.is_none() {
        cfg.model.package = default_model()?;
    }
    Ok(cfg)
}

/// `--precision` (already limited to `fp32` / `int8` by the parser) over
/// the configuration's.
fn set_precision(cfg: &mut StationConfig, precision: Option<&str>) {
    match precision {
        Some("int8") => cfg.model.precision = firmware_config::Precision::Int8,
        Some(_) => cfg.model.precision = firmware_config::Precision::Fp32,
        None => {}
    }
}

/// Every recipe's standard read with the model's words: problems that stop
/// the station (a file without clauses) and flags (clauses not read with
/// confidence), as `config check` reports them.
fn check_recipes(cfg: &StationConfig) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut flags) = (Vec::new(), Vec::new());
    let vocabulary = match fusion::package::Manifest::read(&cfg.model.package) {
        Ok(m) => m.output.vocabulary(),
        Err(e) => {
            problems.push(format!("model.package: {e}"));
            return (problems, flags);
        }
    };
    for (i, r) in cfg.recipes.iter().enumerate() {
        match appliance::standards::load(&r.name, &r.standard) {
            Err(e) => problems.push(format!("recipes[{i}].standard: {e:#}")),
            Ok(standard) => {
                for f in appliance::standards::flagged(&standard.readings(&vocabulary)) {
                    flags.push(format!(
                        "recipe `{}`, clause {}: not read with confidence ({}); verdicts citing it go to REVIEW",
                        r.name,
                        f.clause,
                        f.doubt.as_deref().unwrap_or("unclear")
                    ));
                }
            }
        }
    }
    (problems, flags)
}

/// `appliance plant`: the plant server.
fn run_plant(config: PathBuf) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let cfg = appliance::plant::load(&config)?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let stop = stop_on_signal();
        appliance::plant::serve(cfg, stop, appliance::systemd::http_listener()?).await
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Turns true on Ctrl-C or SIGTERM.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn serve(cfg: StationConfig) -> anyhow::Result<()> {
    pipeline::run(cfg, stop_on_signal(), appliance::systemd::http_listener()?).await
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Run { .. } | Command::Plant { .. } | Command::Demo { .. } | Command::Bench(_)
    ) {
        quiet_on_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The cause chain in words; never a backtrace (RUST_BACKTRACE is
            // for developers reading a panic, not for an integrator).
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates under contention an arena of its
/// own, up to eight per core, and keeps what each arena once held. The
/// station has many threads (inference workers, ONNX Runtime's, the async
/// runtime, SQLite's, the broker's), and in a 10-minute soak at half load its
/// resident memory kept climbing (445 to 466 MiB); with two arenas it stayed
/// within 404 to 413 MiB, with a lower latency (README, "Soak"). Set before
/// any thread starts; `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread is
        // running yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// One-shot commands are read by other programs (`… | head`): a reader that
/// goes away ends the command quietly, as it ends any Unix tool, instead of
/// a panic on the next line printed. The service keeps Rust's default
/// (SIGPIPE ignored): a peer closing a socket is an error it handles.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs `f` on the store the station configuration at `config` names, on a
/// runtime of its own: the one-shot commands that read or write accounts
/// and verdicts.
fn on_store<T>(
    config: &Path,
    f: impl AsyncFnOnce(store::Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let cfg = Loader::new(Some(config)).load()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir).await?;
        f(store).await
    })
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::User { action } => manage_user(action),
        Command::BenchReview {
            verdicts,
            rounds,
            dir,
            postgres,
            reuse,
        } => bench_review(verdicts, rounds, dir, postgres, reuse),
        Command::BenchPlant {
            stations,
            rate,
            seconds,
            postgres,
            package,
            standard,
            precision,
            stand_in,
            replay,
            kill_at,
            broker_restart_at,
            dir,
        } => bench_plant(appliance::bench_plant::Plan {
            stations,
            rate,
            seconds,
            postgres,
            package: package
                .canonicalize()
                .with_context(|| format!("--package {}", package.display()))?,
            standard: standard
                .canonicalize()
                .with_context(|| format!("--standard {}", standard.display()))?,
            precision,
            stand_in,
            replay,
            kill_at,
            broker_restart_at,
            dir: std::path::absolute(&dir)?,
        }),
        Command::Export { config, out, since } => export(config, out, since),
        Command::Token { action } => manage_token(action),
        Command::Config { action } => config(action),
        Command::Standard {
            action: StandardAction::Check { file, model },
        } => check_standard(file, model),
        Command::Standard {
            action: StandardAction::Compile { model },
        } => compile_standard(model),
        Command::Synth(args) => synth(args),
        Command::SynthPlant {
            out,
            heldout,
            per_class,
            seed,
        } => synth_plant(out, heldout, per_class, seed),
        Command::Inspect(args) => inspect(args),
        Command::Eval(args) => eval_model(args),
        Command::Bench(args) => bench(args),
        Command::Run { config } => run_station(config),
        Command::Plant { config } => run_plant(config),
        Command::Demo { config } => demo(config),
    }
}

/// `appliance user add`: a review user, password from stdin.
fn add_user(config: PathBuf, name: String, role: String) -> anyhow::Result<std::process::ExitCode> {
    let role = store::accounts::Role::parse(&role)?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    on_store(&config, async |store| {
        Ok(store::accounts::add_user(&store, &name, role, password).await?)
    })?;
    eprintln!("user `{name}` ({}) saved", role.as_str());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance bench-review`: the review list page against many verdicts.
fn bench_review(
    verdicts: u64,
    rounds: usize,
    dir: PathBuf,
    postgres: Option<String>,
    reuse: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let report = tokio::runtime::Runtime::new()?.block_on(appliance::bench_review::run(
        verdicts,
        rounds,
        &dir,
        postgres.as_deref(),
        reuse,
    ))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance bench-plant`: the plant load test.
fn bench_plant(plan: appliance::bench_plant::Plan) -> anyhow::Result<std::process::ExitCode> {
    let report = tokio::runtime::Runtime::new()?.block_on(appliance::bench_plant::run(plan))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance export`: reviewed verdicts as training data.
fn export(config: PathBuf, out: PathBuf, since: String) -> anyhow::Result<std::process::ExitCode> {
    let report = on_store(&config, async |store| {
        Ok(store::export::export(&store, &out, &since).await?)
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance user add|disable|enable|remove|list`.
fn manage_user(action: UserAction) -> anyhow::Result<std::process::ExitCode> {
    use store::accounts;
    match action {
        UserAction::Add { config, name, role } => return add_user(config, name, role),
        UserAction::Disable { config, name } => {
            on_store(&config, async |s| {
                Ok(accounts::set_disabled(&s, &name, true).await?)
            })?;
            eprintln!("user `{name}` disabled; its sessions ended");
        }
        UserAction::Enable { config, name } => {
            on_store(&config, async |s| {
                Ok(accounts::set_disabled(&s, &name, false).await?)
            })?;
            eprintln!("user `{name}` enabled");
        }
        UserAction::Remove { config, name } => {
            on_store(&config, async |s| {
                Ok(accounts::remove_user(&s, &name).await?)
            })?;
            eprintln!("user `{name}` removed");
        }
        UserAction::List { config } => {
            for u in on_store(&config, async |s| Ok(accounts::list_users(&s).await?))? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{state}", u.name, u.role, u.created_at);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance token add`: an API token for the MES, printed once.
fn add_token(
    config: PathBuf,
    name: String,
    role: String,
    expires: String,
) -> anyhow::Result<std::process::ExitCode> {
    let role = store::accounts::Role::parse(&role)?;
    let lifetime = match expires.as_str() {
        "never" => None,
        text => Some(humantime::parse_duration(text).map_err(|e| {
            anyhow::anyhow!("--expires `{text}`: {e}; write e.g. 90d, 12h or never")
        })?),
    };
    let token = on_store(&config, async |store| {
        Ok(store::accounts::add_token(&store, &name, role, lifetime).await?)
    })?;
    println!("{token}");
    let until = match lifetime {
        Some(l) => format!("for {}", humantime::format_duration(l)),
        None => "until revoked".into(),
    };
    eprintln!(
        "token `{name}` ({}), valid {until}: send it as `Authorization: Bearer <token>`; it is not shown again",
        role.as_str()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance token add|revoke|list`.
fn manage_token(action: TokenAction) -> anyhow::Result<std::process::ExitCode> {
    use store::accounts;
    match action {
        TokenAction::Add {
            config,
            name,
            role,
            expires,
        } => return add_token(config, name, role, expires),
        TokenAction::Revoke { config, name } => {
            on_store(&config, async |s| {
                Ok(accounts::revoke_token(&s, &name).await?)
            })?;
            eprintln!("token `{name}` revoked");
        }
        TokenAction::List { config } => {
            for t in on_store(&config, async |s| Ok(accounts::list_tokens(&s).await?))? {
                let state = match (&t.revoked_at, &t.expires_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(until)) => format!("expires {until}"),
                    (None, None) => "until revoked".into(),
                };
                println!("{}\t{}\t{}\t{state}", t.name, t.role, t.created_at);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance config default|check`.
fn config(action: ConfigAction) -> anyhow::Result<std::process::ExitCode> {
    match action {
        ConfigAction::Default => print!("{}", firmware_config::DEFAULT_TOML),
        ConfigAction::Check { file } => match Loader::new(Some(&file)).load() {
            Ok(cfg) => {
                let (problems, flags) = check_recipes(&cfg);
                if !problems.is_empty() {
                    eprintln!("{} has {} problem(s):", file.display(), problems.len());
                    for p in &problems {
                        eprintln!("  - {p}");
                    }
                    return Ok(std::process::ExitCode::from(2));
                }
                for f in &flags {
                    println!("warning: {f}");
                }
                println!(
                    "{}: ok (station {}/{}/{}, {} camera(s), {} recipe(s), active recipe `{}`, model {})",
                    file.display(),
                    cfg.station.site,
                    cfg.station.line,
                    cfg.station.station,
                    cfg.cameras.len(),
                    cfg.recipes.len(),
                    cfg.station.recipe,
                    cfg.model.package.display()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                return Ok(std::process::ExitCode::from(2));
            }
        },
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance standard check`: how the model reads each clause; exit 1 when a clause is not read with confidence, 2 when the file is unusable.
fn check_standard(file: PathBuf, model: Option<PathBuf>) -> anyhow::Result<std::process::ExitCode> {
    let package = match model {
        Some(m) => m,
        None => default_model()?,
    };
    let manifest = fusion::package::Manifest::read(&package)?;
    let vocabulary = manifest.output.vocabulary();
    let standard = match appliance::standards::load("check", &file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(std::process::ExitCode::from(2));
        }
    };
    let (text, flagged) = appliance::standards::describe(&standard, &vocabulary);
    print!("{text}");
    if let Some(compiled) = appliance::standards::compiled(&standard, &manifest) {
        print!("{compiled}");
    }
    println!(
        "{}: {} clause(s), {} not read with confidence (marked !); model words from {}",
        file.display(),
        standard.clauses.len(),
        flagged,
        package.display()
    );
    if flagged > 0 {
        return Ok(std::process::ExitCode::from(1));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance standard compile`: standards in, compiled standards out, one JSON line each (the Python toolchain asks this).
fn compile_standard(model: Option<PathBuf>) -> anyhow::Result<std::process::ExitCode> {
    let package = match model {
        Some(m) => m,
        None => default_model()?,
    };
    let manifest = fusion::package::Manifest::read(&package)?;
    appliance::standards::compile_lines(
        &manifest,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance synth`: a synthetic training or evaluation set.
fn synth(args: SynthArgs) -> anyhow::Result<std::process::ExitCode> {
    let SynthArgs {
        out,
        count,
        seed,
        standards_per_part,
        languages,
        heldout,
        counterfactuals,
        wording,
        standards_from,
    } = args;
    use synth::{dataset, Language, Phrasings, Wording};
    if let Some(dir) = standards_from {
        let standards = appliance::handwritten::sourced(&dir)?;
        let (manifest, left_out) = dataset::write_dataset_judged_by(&out, count, seed, &standards)
            .with_context(|| format!("writing synthetic parts to {}", out.display()))?;
        println!(
                "wrote {count} parts judged under {} hand-written standard(s) to {} ({left_out} judgement(s) left out: a defect size within 25% of the limit that judges it)",
                standards.len(),
                manifest.display()
            );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let wording = Wording::parse(&wording)
        .with_context(|| format!("unknown wording {wording:?}: use v1 or v2"))?;
    let languages = languages
        .iter()
        .map(|l| {
            Language::parse(l).with_context(|| format!("unknown language {l:?}: use en or zh"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = dataset::DatasetSpec {
        count,
        seed,
        standards_per_part,
        languages,
        phrasings: if heldout {
            Phrasings::Heldout
        } else {
            Phrasings::Train
        },
        counterfactuals,
    };
    let manifest = dataset::write_dataset_worded(&out, &spec, wording)
        .with_context(|| format!("writing synthetic parts to {}", out.display()))?;
    println!("wrote {count} parts to {}", manifest.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance synth-plant`: the synthetic "new line" for the fine-tuning demonstration.
fn synth_plant(
    out: PathBuf,
    heldout: PathBuf,
    per_class: usize,
    seed: u64,
) -> anyhow::Result<std::process::ExitCode> {
    use synth::plant;
    plant::write_plant_folders(&out, per_class, seed)
        .with_context(|| format!("writing the new line to {}", out.display()))?;
    let manifest = plant::write_plant_manifest(&heldout, per_class, seed + 1)
        .with_context(|| format!("writing the held-out split to {}", heldout.display()))?;
    println!(
        "wrote {per_class} images per class to {} and the held-out split to {}",
        out.display(),
        manifest.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance inspect`: judge pictures once, without a station.
fn inspect(args: InspectArgs) -> anyhow::Result<std::process::ExitCode> {
    let InspectArgs {
        images,
        standard,
        model,
        config,
        mm_per_px,
        precision,
        batch,
    } = args;
    init_logging();
    let mut cfg = tool_config(config.as_deref(), model)?;
    set_precision(&mut cfg, precision.as_deref());
    let standard = appliance::standards::load("cli", &standard)?;
    let pictures = appliance::inspect::pictures(&images)?;
    let one = images.len() == 1 && images[0].is_file();
    let mut engine = pipeline::load_engine(&cfg)?;
    let mut first_error = None;
    let failed = appliance::inspect::judge_all(
        &mut engine,
        &standard,
        &pictures,
        mm_per_px,
        batch,
        |path, result| match result {
            Ok(v) if one => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
            }
            Ok(v) => println!("{v}"),
            Err(e) if one => first_error = Some(e),
            Err(e) => {
                eprintln!("{e:#}");
                println!(
                    "{}",
                    serde_json::json!({"image": path.display().to_string(), "error": format!("{e:#}")})
                );
            }
        },
    )?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} pictures not judged", pictures.len());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance eval`: the model against a labelled folder.
fn eval_model(args: EvalArgs) -> anyhow::Result<std::process::ExitCode> {
    let EvalArgs {
        data,
        model,
        limit,
        precision,
        write,
        data_command,
    } = args;
    init_logging();
    let mut cfg = tool_config(None, model)?;
    set_precision(&mut cfg, precision.as_deref());
    let mut engine = pipeline::load_engine(&cfg)?;
    let report = eval::evaluate(&mut engine, &data, limit)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(name) = write {
        let precision = match cfg.model.precision {
            firmware_config::Precision::Int8 => "int8",
            _ => "fp32",
        };
        let manifest = cfg.model.package.join("model.toml");
        eval::write_into(&manifest, &name, precision, &data_command, &report)?;
        eprintln!("figures written into {}", manifest.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance bench`: the whole pipeline under load.
fn bench(args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let BenchArgs {
        config,
        frames,
        cameras,
        rate,
        duration_s,
        precision,
        max_batch,
        max_wait_ms,
        mqtt,
        distinct,
        compute_rounds,
        export,
        shadow,
        hot_folder,
        poll_ms,
    } = args;
    init_logging();
    let mut cfg = Loader::new(Some(&config)).load()?;
    if let Some(p) = precision {
        cfg.model.precision = match p.as_str() {
            "fp32" => firmware_config::Precision::Fp32,
            "int8" => firmware_config::Precision::Int8,
            other => anyhow::bail!("--precision {other:?}: use fp32 or int8"),
        };
    }
    if let Some(b) = max_batch {
        anyhow::ensure!(b >= 1, "--max-batch must be at least 1");
        cfg.batching.max_batch = b;
    }
    if let Some(ms) = max_wait_ms {
        cfg.batching.max_wait = std::time::Duration::from_secs_f64(ms.max(0.0) / 1e3);
    }
    if let Some(url) = mqtt {
        // A broker named on the command line is the one to use, even
        // where the configuration hosts its own (the demo's does).
        cfg.mqtt.url = url;
        cfg.mqtt.broker = firmware_config::BrokerMode::External;
    }
    cfg.station.station = format!("bench-{}", std::process::id());
    let opts = appliance::bench::BenchOptions {
        frames,
        cameras,
        rate,
        duration: duration_s.map(std::time::Duration::from_secs_f64),
        distinct,
        compute_rounds,
        export,
        shadow,
        feed: if hot_folder {
            appliance::bench::Feed::HotFolder {
                poll: std::time::Duration::from_millis(poll_ms),
            }
        } else {
            appliance::bench::Feed::Direct
        },
    };
    let report = tokio::runtime::Runtime::new()?.block_on(appliance::bench::run(cfg, opts))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance run`: the station service.
fn run_station(config: PathBuf) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let cfg = Loader::new(Some(&config)).load()?;
    tokio::runtime::Runtime::new()?.block_on(serve(cfg))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `appliance demo`: the station on the synthetic line, with how to watch it.
fn demo(config: PathBuf) -> anyhow::Result<std::process::ExitCode> {
    init_logging();
    let cfg = Loader::new(Some(&config)).load()?;
    let topic = format!("{}/{}/#", cfg.mqtt.topic_prefix, cfg.station.station);
    let (host, port) = match cfg.mqtt.broker {
        firmware_config::BrokerMode::Embedded => {
            let a = cfg.mqtt.embedded_listen;
            (a.ip().to_string(), a.port().to_string())
        }
        firmware_config::BrokerMode::External => cfg
            .mqtt
            .url
            .trim_start_matches("mqtt://")
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap_or(("127.0.0.1".into(), "1883".into())),
    };
    eprintln!(
        "\nDemo station `{}`: the synthetic line feeds the pipeline.",
        cfg.station.station
    );
    eprintln!("Watch verdicts:   mosquitto_sub -h {host} -p {port} -t '{topic}' -v");
    eprintln!(
            "Stored verdicts:  sqlite3 {} 'SELECT decided_at, part_id, decision FROM verdicts ORDER BY decided_at DESC LIMIT 10'",
            cfg.storage.database_url.trim_start_matches("sqlite://")
        );
    eprintln!("Stop with Ctrl-C.\n");
    tokio::runtime::Runtime::new()?.block_on(serve(cfg))?;
    Ok(std::process::ExitCode::SUCCESS)
}
