//! One clock for every process of a run: microseconds since the epoch, so an upstream's answer
//! time and a subscriber's arrival time in another process can be subtracted.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
