//! Order statistics of samples: min, p50, p99, max (nearest rank).

use serde_json::{json, Value};

/// Min, p50, p99 and max of a sample set, and its size.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The smallest.
    pub min: f64,
    /// The median (nearest rank).
    pub p50: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

/// The `p`-th percentile of sorted `v` by nearest rank: the smallest value
/// with at least `p`% of the samples at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// The summary of `samples` (all zero when there are none).
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = samples.into_iter().collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        Summary {
            count: v.len(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }

    /// `{"count", "min", "p50", "p99", "max"}`, each suffixed with `unit`
    /// (e.g. `_us`) but the count.
    pub fn to_json(&self, unit: &str) -> Value {
        json!({
            "count": self.count,
            format!("min{unit}"): round(self.min),
            format!("p50{unit}"): round(self.p50),
            format!("p99{unit}"): round(self.p99),
            format!("max{unit}"): round(self.max),
        })
    }
}

/// `x` to 0.01 (µs: 10 ns is below the clock's noise).
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A duration in µs written with a unit that keeps 3 or 4 significant
/// digits: `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn fmt_us(x: f64) -> String {
    if x < 1.0 {
        format!("{:.0} ns", x * 1e3)
    } else if x < 1e3 {
        format!("{x:.1} µs")
    } else if x < 1e6 {
        format!("{:.2} ms", x / 1e3)
    } else {
        format!("{:.2} s", x / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=100).map(f64::from));
        assert_eq!((s.min, s.p50, s.p99, s.max), (1.0, 50.0, 99.0, 100.0));
        let one = Summary::of([7.0]);
        assert_eq!((one.p50, one.p99, one.count), (7.0, 7.0, 1));
        assert_eq!(Summary::of([]).count, 0);
        assert_eq!(Summary::of([3.0, 1.0, 2.0]).p50, 2.0);
    }

    #[test]
    fn units_stay_readable() {
        assert_eq!(fmt_us(0.25), "250 ns");
        assert_eq!(fmt_us(12.34), "12.3 µs");
        assert_eq!(fmt_us(4560.0), "4.56 ms");
        assert_eq!(fmt_us(21.9e6), "21.90 s");
    }
}
