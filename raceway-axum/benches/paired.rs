//! The server variants of `overhead.rs`, measured interleaved and paired, for machines whose speed drifts.
//!
//! Criterion measures one variant after another, so on a shared or throttled machine a slow phase can land on
//! one variant and not on the next, and the comparison follows the machine rather than the code. Here every
//! round runs one chunk of requests of each variant back to back (the order rotates from round to round), and
//! each variant's overhead is taken against the `bare` chunk *of the same round*; the report gives the median
//! and the interquartile range of those per-round differences, by wall time and by the request thread's CPU
//! time. Exporting variants are drained (untimed) after each chunk, as in `overhead.rs`, and the run asserts
//! that neither exporter dropped anything.
//!
//! ```sh
//! cargo bench -p raceway-axum --bench paired                # all variants
//! cargo bench -p raceway-axum --bench paired -- exporter otel  # bare plus the variants whose name contains a word
//! ```
//!
//! `RACEWAY_PAIRED_ROUNDS` (default 60) and `RACEWAY_PAIRED_CHUNK` (requests per chunk, default 5000) size the run;
//! `RACEWAY_PAIRED_DUMP=1` also prints every round's numbers (to stderr).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use tower::ServiceExt;

use common::{headers, request, Clock, Variants};

/// What to empty, untimed, after a variant's chunk.
#[derive(Clone, Copy)]
enum Drain {
    Nothing,
    Recorder,
    RacewayExporter,
    OtelNoop,
    OtelOtlp,
}

struct Variant<'a> {
    name: &'static str,
    app: &'a Router,
    drain: Drain,
    /// Per round: nanoseconds per request, (wall, request-thread CPU).
    samples: Vec<(f64, f64)>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        quantile(&values, 0.25),
        quantile(&values, 0.5),
        quantile(&values, 0.75),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; other words select variants.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds = env_usize("RACEWAY_PAIRED_ROUNDS", 60);
    let chunk = env_usize("RACEWAY_PAIRED_CHUNK", 5000).min(common::CHUNK as usize) as u64;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers = headers();
    let v = Variants::new();
    let all = [
        ("bare", &v.bare, Drain::Nothing),
        (
            "raceway/propagation_only",
            &v.propagation_only,
            Drain::Nothing,
        ),
        ("raceway/recorder", &v.recording, Drain::Recorder),
        ("raceway/exporter", &v.exporting_app, Drain::RacewayExporter),
        ("otel/propagation+span", &v.otel_app, Drain::OtelNoop),
        ("otel/otlp-http", &v.otlp_app, Drain::OtelOtlp),
    ];
    let mut variants: Vec<Variant<'_>> = all
        .into_iter()
        .filter(|(name, _, _)| {
            *name == "bare" || words.is_empty() || words.iter().any(|w| name.contains(w.as_str()))
        })
        .map(|(name, app, drain)| Variant {
            name,
            app,
            drain,
            samples: Vec::with_capacity(rounds),
        })
        .collect();

    let run_chunk = |variant: &Variant<'_>| -> (f64, f64) {
        rt.block_on(async {
            if let Drain::OtelOtlp = variant.drain {
                v.otlp_requests.fetch_add(chunk, Ordering::Relaxed);
            }
            let (wall, cpu) = (Clock::Wall.now(), Clock::ThreadCpu.now());
            for _ in 0..chunk {
                std::hint::black_box(
                    variant
                        .app
                        .clone()
                        .oneshot(request(&headers))
                        .await
                        .unwrap(),
                );
            }
            let per_request = |d: Duration| d.as_nanos() as f64 / chunk as f64;
            let measured = (
                per_request(Clock::Wall.now() - wall),
                per_request(Clock::ThreadCpu.now() - cpu),
            );
            match variant.drain {
                Drain::Nothing => {}
                Drain::Recorder => drop(v.recorder.take()),
                Drain::RacewayExporter => {
                    assert!(v.exporting.flush(Duration::from_secs(60)).await)
                }
                Drain::OtelNoop => v.provider.force_flush().unwrap(),
                Drain::OtelOtlp => v.otlp_provider.force_flush().unwrap(),
            }
            measured
        })
    };

    // Warm-up: caches, connections, allocator.
    for variant in &variants {
        run_chunk(variant);
    }
    let n = variants.len();
    for round in 0..rounds {
        // Rotate, and reverse every other round, so that each variant runs at each position and after each other.
        let mut order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let measured = run_chunk(&variants[i]);
            variants[i].samples.push(measured);
        }
    }

    if std::env::var_os("RACEWAY_PAIRED_DUMP").is_some() {
        // Per round, wall nanoseconds per request of each variant: to see phases of the machine.
        for round in 0..rounds {
            let row: Vec<String> = variants
                .iter()
                .map(|v| format!("{:.0}", v.samples[round].0))
                .collect();
            eprintln!("round {round}: {}", row.join(" "));
        }
    }
    let bare = variants[0].samples.clone();
    println!(
        "{rounds} rounds x {chunk} requests per variant, interleaved; per request, median [interquartile range]\n"
    );
    println!("| variant | wall | overhead vs bare (wall) | request-thread CPU | overhead vs bare (CPU) |");
    println!("|---|---|---|---|---|");
    for variant in &variants {
        let wall = quartiles(variant.samples.iter().map(|s| s.0).collect());
        let cpu = quartiles(variant.samples.iter().map(|s| s.1).collect());
        let (wall_over, cpu_over) = if variant.name == "bare" {
            ("—".to_owned(), "—".to_owned())
        } else {
            let diff = |f: fn(&(f64, f64)) -> f64| {
                quartiles(
                    variant
                        .samples
                        .iter()
                        .zip(&bare)
                        .map(|(s, b)| f(s) - f(b))
                        .collect(),
                )
            };
            let fmt = |(lo, mid, hi): (f64, f64, f64)| {
                format!(
                    "**{:+.2} µs** [{:+.2}, {:+.2}]",
                    mid / 1e3,
                    lo / 1e3,
                    hi / 1e3
                )
            };
            (fmt(diff(|s| s.0)), fmt(diff(|s| s.1)))
        };
        println!(
            "| {} | {:.2} µs [{:.2}, {:.2}] | {} | {:.2} µs [{:.2}, {:.2}] | {} |",
            variant.name,
            wall.1 / 1e3,
            wall.0 / 1e3,
            wall.2 / 1e3,
            wall_over,
            cpu.1 / 1e3,
            cpu.0 / 1e3,
            cpu.2 / 1e3,
            cpu_over,
        );
    }
    // The issue's anchor, paired the same way: each Raceway variant against OpenTelemetry with a span.
    if let Some(otel) = variants
        .iter()
        .find(|v| v.name == "otel/propagation+span")
        .map(|v| v.samples.clone())
    {
        println!(
            "\n| variant | minus `otel/propagation+span`, wall | rounds where it was faster |"
        );
        println!("|---|---|---|");
        for variant in variants.iter().filter(|v| v.name.starts_with("raceway/")) {
            let diffs: Vec<f64> = variant
                .samples
                .iter()
                .zip(&otel)
                .map(|(s, o)| s.0 - o.0)
                .collect();
            let faster = diffs.iter().filter(|d| **d < 0.0).count();
            let (lo, mid, hi) = quartiles(diffs);
            println!(
                "| {} | **{:+.2} µs** [{:+.2}, {:+.2}] | {faster} of {rounds} |",
                variant.name,
                mid / 1e3,
                lo / 1e3,
                hi / 1e3
            );
        }
    }
    // The exporters' counters must show that nothing was dropped, or the rows would not compare.
    v.finish(&rt);
}
