//! A Prometheus histogram each event loop records into on its own cache lines, without a lock.
//!
//! Why not prometheus-client's `Histogram`: it takes a mutex for every observation, and two of
//! ours are observed on every proxied request (`syncgate_http_request_duration_seconds`) and
//! every event written to a socket (`syncgate_event_delivery_seconds`), from every loop at once:
//! a fan-out to 10,000 sockets took that lock 10,000 times from two cores, and the lock's line
//! moved between them with it. Here each loop adds to its own shard with relaxed atomic adds,
//! and a scrape, which is rare, sums the shards. The text it encodes is the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::per_loop::PerLoop;

/// Finite upper bounds a histogram takes; `+Inf` is one more bucket.
pub const BOUNDS: usize = 15;

/// Cheap to clone: the registry holds one clone, `Metrics` another.
#[derive(Debug, Clone)]
pub struct ShardedHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// As given, in seconds, for the `le` labels.
    bounds: [f64; BOUNDS],
    /// The same in nanoseconds, which observations are compared in.
    bounds_nanos: [u64; BOUNDS],
    shards: PerLoop<Shard>,
}

/// One loop's counts (on lines of their own, as `PerLoop` keeps them).
#[derive(Debug, Default)]
struct Shard {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BOUNDS + 1],
    sum_nanos: AtomicU64,
}

impl ShardedHistogram {
    /// `bounds` must ascend (every bucket list in `metrics` does; a test checks them).
    pub fn new(bounds: [f64; BOUNDS]) -> ShardedHistogram {
        ShardedHistogram {
            inner: Arc::new(Inner {
                bounds,
                bounds_nanos: bounds.map(|b| (b * 1e9).round() as u64),
                shards: PerLoop::default(),
            }),
        }
    }

    /// Counts `elapsed` on this loop's shard (threads outside the loops share shard 0).
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.inner;
        let bucket = inner
            .bounds_nanos
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BOUNDS);
        let shard = inner.shards.here();
        if let Some(count) = shard.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and (upper bound, count) per bucket, `+Inf` last, as the encoder
    /// takes them. A scrape during observations may see a count a little ahead of the sum or
    /// the reverse, as with any lock-free histogram; each is exact once observations pause.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .map(|b| (b, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for shard in inner.shards.all() {
            for (bucket, count) in buckets.iter_mut().zip(&shard.counts) {
                bucket.1 += count.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    const BOUNDS_S: [f64; BOUNDS] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];

    fn text(
        name: &str,
        metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) -> String {
        let mut registry = Registry::default();
        registry.register(name, "help", metric);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    /// Observations that land on bounds, between them, below the first and beyond the last.
    fn samples() -> Vec<Duration> {
        [
            0,
            50_000,
            100_000,
            100_001,
            999_999,
            1_000_000,
            7_000_000,
            4_999_999_999,
            5_000_000_000,
        ]
        .iter()
        .map(|&n| Duration::from_nanos(n))
        .chain([Duration::from_secs(60), Duration::MAX])
        .collect()
    }

    #[test]
    fn encodes_what_prometheus_clients_histogram_encodes_for_the_same_observations() {
        let ours = ShardedHistogram::new(BOUNDS_S);
        let theirs = Histogram::new(BOUNDS_S);
        for d in samples()
            .into_iter()
            .filter(|d| *d < Duration::from_secs(3600))
        {
            ours.observe(d);
            theirs.observe(d.as_secs_f64());
        }
        let (ours, theirs) = (text("h", ours), text("h", theirs));
        let sum = |t: &str| -> f64 {
            let line = t.lines().find(|l| l.starts_with("h_sum ")).unwrap();
            line["h_sum ".len()..].parse().unwrap()
        };
        assert!((sum(&ours) - sum(&theirs)).abs() < 1e-9, "{ours}\n{theirs}");
        let others = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("h_sum "))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(others(&ours), others(&theirs));
        assert!(ours.contains("h_bucket{le=\"+Inf\"} 10"), "{ours}");
    }

    #[test]
    fn every_loops_observations_are_summed_and_an_unbounded_one_counts_in_inf() {
        let h = ShardedHistogram::new(BOUNDS_S);
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let h = h.clone();
                std::thread::spawn(move || {
                    crate::workers::enter(i);
                    for _ in 0..1000 {
                        h.observe(Duration::from_micros(200));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        h.observe(Duration::MAX);
        let (_, count, buckets) = h.snapshot();
        assert_eq!(count, 20_001);
        assert_eq!(buckets[1], (0.00025, 20_000), "200 µs is under 250 µs");
        assert_eq!(buckets[BOUNDS], (f64::INFINITY, 1));
    }
}
