//! How figures are written for people: percentages, latencies, costs, spans.

/// `0.384` → `38.4%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A latency: `181 ms`, `1.4 s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A cost per call, with the digits that matter.
pub fn cost(c: f64) -> String {
    if c == 0.0 {
        "0".into()
    } else if c >= 1.0 {
        format!("{c:.2}")
    } else {
        // Four significant digits below 1.
        let digits = (-c.log10()).ceil().max(0.0) as usize + 3;
        let s = format!("{c:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A span for a sentence: `45 s`, `12 min`, `2 h`, `3 days`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 36.0 * 3600.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86400.0)
    }
}
