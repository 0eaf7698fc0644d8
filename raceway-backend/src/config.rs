//! Configuration: command-line flags > `raceway.toml` > `RACEWAY_*` environment variables > defaults.
//!
//! Every setting can come from any of the three sources; the first one that sets it wins.
//!
//! | flag | `raceway.toml` | environment | default |
//! |---|---|---|---|
//! | `--listen` | `listen` | `RACEWAY_LISTEN` | `127.0.0.1:8080` |
//! | `--storage` | `storage` | `RACEWAY_STORAGE` | `sqlite:<data_dir>/raceway.db` |
//! | `--data-dir` | `data_dir` | `RACEWAY_DATA_DIR` | `./raceway-data` |
//! | `--api-key` (repeatable) | `api_keys` | `RACEWAY_API_KEYS` (comma-separated) | none |
//! | `--insecure` | `insecure` | `RACEWAY_INSECURE` | `false` |
//! | `--retention` | `retention` | `RACEWAY_RETENTION` | none (keep forever) |
//! | `--body-limit` | `limits.body_bytes` | `RACEWAY_BODY_LIMIT` | 4 MiB |
//! | `--ingest-concurrency` | `limits.ingest_concurrency` | `RACEWAY_INGEST_CONCURRENCY` | 4 × cores |
//! | `--ingest-queue` | `limits.ingest_queue` | `RACEWAY_INGEST_QUEUE` | 256 |
//! | `--cors-origin` (repeatable) | `cors.origins` | `RACEWAY_CORS_ORIGINS` | none (no CORS headers) |
//! | `--distributed-tracing` | `distributed_tracing.enabled` | `RACEWAY_DISTRIBUTED_TRACING_ENABLED` | `true` |
//! | `--skew-tolerance` | `analysis.skew_tolerance` | `RACEWAY_SKEW_TOLERANCE` | `10ms` |
//! | `--quiet-period` | `analysis.quiet_period` | `RACEWAY_QUIET_PERIOD` | `30s` |
//! | `--max-linked-traces` | `analysis.max_linked_traces` | `RACEWAY_MAX_LINKED_TRACES` | 64 |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::storage::StorageSpec;

/// `raceway-backend` command line.
#[derive(Debug, Parser)]
#[command(
    name = "raceway-backend",
    version,
    about = "Raceway backend: ingestion, storage, analysis, query API"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
}

/// Flags of `serve` (all optional: unset flags fall back to the file, the environment, the defaults).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// `memory`, `sqlite:PATH` or `postgres://...`.
    #[arg(long)]
    pub storage: Option<String>,
    /// Data directory (holds the default SQLite database).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default: `RACEWAY_CONFIG`, else `./raceway.toml` when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// API key (repeatable). With keys, every endpoint but `/health` needs one.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Allow a non-loopback listen address without API keys.
    #[arg(long)]
    pub insecure: bool,
    /// Delete traces whose newest event is older than this (`7d`, `12h`, `30m`).
    #[arg(long)]
    pub retention: Option<String>,
    /// Request body limit in bytes.
    #[arg(long)]
    pub body_limit: Option<usize>,
    /// Batches processed at once.
    #[arg(long)]
    pub ingest_concurrency: Option<usize>,
    /// Batches allowed to wait for processing; beyond it ingestion answers 429.
    #[arg(long)]
    pub ingest_queue: Option<usize>,
    /// Allowed CORS origin (repeatable; `*` for any).
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Derive spans and cross-service edges (`true`/`false`).
    #[arg(long)]
    pub distributed_tracing: Option<bool>,
    /// Clock skew tolerated between hosts for cross-trace races (`10ms`).
    #[arg(long)]
    pub skew_tolerance: Option<String>,
    /// A trace counts as finished (feeds the anomaly baselines) after this long without new events.
    #[arg(long)]
    pub quiet_period: Option<String>,
    /// Maximum number of traces stitched together after header loss.
    #[arg(long)]
    pub max_linked_traces: Option<usize>,
}

/// `raceway.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Storage spec.
    pub storage: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// API keys.
    pub api_keys: Option<Vec<String>>,
    /// Allow non-loopback without keys.
    pub insecure: Option<bool>,
    /// Retention.
    pub retention: Option<String>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[cors]`.
    #[serde(default)]
    pub cors: FileCors,
    /// `[distributed_tracing]`.
    #[serde(default)]
    pub distributed_tracing: FileDistributed,
    /// `[analysis]`.
    #[serde(default)]
    pub analysis: FileAnalysis,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Body limit.
    pub body_bytes: Option<usize>,
    /// Concurrency.
    pub ingest_concurrency: Option<usize>,
    /// Queue.
    pub ingest_queue: Option<usize>,
}

/// `[cors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCors {
    /// Origins.
    pub origins: Option<Vec<String>>,
}

/// `[distributed_tracing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDistributed {
    /// Enabled.
    pub enabled: Option<bool>,
}

/// `[analysis]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAnalysis {
    /// Skew tolerance.
    pub skew_tolerance: Option<String>,
    /// Quiet period.
    pub quiet_period: Option<String>,
    /// Max linked traces.
    pub max_linked_traces: Option<usize>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Storage.
    pub storage: StorageSpec,
    /// Data directory.
    pub data_dir: PathBuf,
    /// API keys (empty: no auth).
    pub api_keys: Vec<String>,
    /// Allow non-loopback without keys.
    pub insecure: bool,
    /// Retention (None: keep forever).
    pub retention: Option<Duration>,
    /// Body limit, bytes.
    pub body_limit: usize,
    /// Batches processed at once.
    pub ingest_concurrency: usize,
    /// Batches waiting.
    pub ingest_queue: usize,
    /// CORS origins.
    pub cors_origins: Vec<String>,
    /// Derive spans/edges and stitch services.
    pub distributed_tracing: bool,
    /// Skew tolerance for cross-trace races.
    pub skew_tolerance: Duration,
    /// Quiet period before a trace feeds the baselines.
    pub quiet_period: Duration,
    /// Max traces stitched.
    pub max_linked_traces: usize,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            storage: StorageSpec::Sqlite(PathBuf::from("./raceway-data/raceway.db")),
            data_dir: PathBuf::from("./raceway-data"),
            api_keys: Vec::new(),
            insecure: false,
            retention: None,
            body_limit: 4 * 1024 * 1024,
            ingest_concurrency: 4 * cores,
            ingest_queue: 256,
            cors_origins: Vec::new(),
            distributed_tracing: true,
            skew_tolerance: Duration::from_millis(10),
            quiet_period: Duration::from_secs(30),
            max_linked_traces: 64,
        }
    }
}

/// Parses `500ms`, `45s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 30s, 15m, 12h, 7d)"))?;
    let secs = |m: u64| Duration::from_secs(n.saturating_mul(m));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(secs(1)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86_400)),
        u => Err(format!(
            "invalid duration unit {u:?} in {s:?} (ms, s, m, h, d)"
        )),
    }
}

fn env_str(env: &dyn Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    env(k).filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    k: &str,
) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    env_str(env, k)
        .map(|v| v.parse::<T>().map_err(|e| format!("{k}={v:?}: {e}")))
        .transpose()
}

fn list(v: Option<String>) -> Option<Vec<String>> {
    v.map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    })
}

impl Config {
    /// Resolves flags > file > environment > defaults, reading the process environment and the file.
    pub fn resolve(args: &ServeArgs) -> Result<Config, String> {
        let env = |k: &str| std::env::var(k).ok();
        let path = args
            .config
            .clone()
            .or_else(|| env_str(&env, "RACEWAY_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let p = Path::new("raceway.toml");
                p.exists().then(|| p.to_path_buf())
            });
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("reading {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, &file, &env)
    }

    /// The precedence rule itself, over explicit sources (tests call this).
    pub fn merge(
        args: &ServeArgs,
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let d = Config::default();
        let dur = |flag: &Option<String>,
                   file: &Option<String>,
                   key: &str|
         -> Result<Option<Duration>, String> {
            flag.clone()
                .or_else(|| file.clone())
                .or_else(|| env_str(env, key))
                .map(|s| parse_duration(&s))
                .transpose()
        };
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .or_else(|| env_str(env, "RACEWAY_DATA_DIR").map(PathBuf::from))
            .unwrap_or(d.data_dir);
        let storage = match args
            .storage
            .clone()
            .or_else(|| file.storage.clone())
            .or_else(|| env_str(env, "RACEWAY_STORAGE"))
        {
            Some(s) => s.parse()?,
            None => StorageSpec::Sqlite(data_dir.join("raceway.db")),
        };
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        Ok(Config {
            listen: match args.listen.or(file.listen) {
                Some(l) => l,
                None => env_parse(env, "RACEWAY_LISTEN")?.unwrap_or(d.listen),
            },
            storage,
            data_dir,
            api_keys: nonempty(&args.api_keys)
                .or_else(|| file.api_keys.clone())
                .or_else(|| list(env_str(env, "RACEWAY_API_KEYS")))
                .unwrap_or_default(),
            insecure: if args.insecure {
                true
            } else {
                match file.insecure {
                    Some(v) => v,
                    None => env_parse(env, "RACEWAY_INSECURE")?.unwrap_or(false),
                }
            },
            retention: dur(&args.retention, &file.retention, "RACEWAY_RETENTION")?,
            body_limit: match args.body_limit.or(file.limits.body_bytes) {
                Some(v) => v,
                None => env_parse(env, "RACEWAY_BODY_LIMIT")?.unwrap_or(d.body_limit),
            },
            ingest_concurrency: match args.ingest_concurrency.or(file.limits.ingest_concurrency) {
                Some(v) => v,
                None => {
                    env_parse(env, "RACEWAY_INGEST_CONCURRENCY")?.unwrap_or(d.ingest_concurrency)
                }
            }
            .max(1),
            ingest_queue: match args.ingest_queue.or(file.limits.ingest_queue) {
                Some(v) => v,
                None => env_parse(env, "RACEWAY_INGEST_QUEUE")?.unwrap_or(d.ingest_queue),
            },
            cors_origins: nonempty(&args.cors_origins)
                .or_else(|| file.cors.origins.clone())
                .or_else(|| list(env_str(env, "RACEWAY_CORS_ORIGINS")))
                .unwrap_or_default(),
            distributed_tracing: match args
                .distributed_tracing
                .or(file.distributed_tracing.enabled)
            {
                Some(v) => v,
                None => env_parse(env, "RACEWAY_DISTRIBUTED_TRACING_ENABLED")?.unwrap_or(true),
            },
            skew_tolerance: dur(
                &args.skew_tolerance,
                &file.analysis.skew_tolerance,
                "RACEWAY_SKEW_TOLERANCE",
            )?
            .unwrap_or(d.skew_tolerance),
            quiet_period: dur(
                &args.quiet_period,
                &file.analysis.quiet_period,
                "RACEWAY_QUIET_PERIOD",
            )?
            .unwrap_or(d.quiet_period),
            max_linked_traces: match args.max_linked_traces.or(file.analysis.max_linked_traces) {
                Some(v) => v,
                None => env_parse(env, "RACEWAY_MAX_LINKED_TRACES")?.unwrap_or(d.max_linked_traces),
            }
            .max(1),
        })
    }

    /// Refuses a non-loopback listen address without API keys unless `insecure`.
    pub fn check_security(&self) -> Result<(), String> {
        if self.api_keys.is_empty() && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(format!(
                "refusing to listen on {} without API keys: add --api-key KEY (or RACEWAY_API_KEYS), \
                 listen on 127.0.0.1, or pass --insecure",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flags_file_env_default() {
        let env_map = |k: &str| match k {
            "RACEWAY_LISTEN" => Some("127.0.0.1:1111".to_string()),
            "RACEWAY_BODY_LIMIT" => Some("10".to_string()),
            "RACEWAY_RETENTION" => Some("1d".to_string()),
            "RACEWAY_DISTRIBUTED_TRACING_ENABLED" => Some("false".to_string()),
            _ => None,
        };
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:2222\"\nretention = \"2h\"\n[limits]\nbody_bytes = 20\n",
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::merge(&args, &file, &env_map).unwrap();
        assert_eq!(c.listen.port(), 3333);
        assert_eq!(c.body_limit, 20);
        assert_eq!(c.retention, Some(Duration::from_secs(7200)));
        assert!(!c.distributed_tracing);
        let c = Config::merge(&ServeArgs::default(), &FileConfig::default(), &env_map).unwrap();
        assert_eq!(c.listen.port(), 1111);
        assert_eq!(c.body_limit, 10);
        let c = Config::merge(&ServeArgs::default(), &FileConfig::default(), &|_| None).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert!(c.distributed_tracing);
        assert_eq!(
            c.storage,
            StorageSpec::Sqlite(PathBuf::from("./raceway-data/raceway.db"))
        );
    }

    #[test]
    fn security_default_refuses_public_bind() {
        let mut c = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Default::default()
        };
        assert!(c.check_security().is_err());
        c.insecure = true;
        assert!(c.check_security().is_ok());
        c.insecure = false;
        c.api_keys = vec!["k".into()];
        assert!(c.check_security().is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("x").is_err());
    }
}
