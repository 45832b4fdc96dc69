//! Job ids (`job_YYYYMMDD_HHMMSS_xxxxxx`) and the one civil-date function the
//! extension uses to turn a Unix time into UTC calendar fields, and the clock (`now_ms`).

/// A new human-usable job id: `job_YYYYMMDD_HHMMSS_xxxxxx`.
pub(crate) fn new_job_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let (y, mo, d, h, mi, s) = civil_from_unix(now_ms().div_euclid(1000));
    format!("job_{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}_{suffix}")
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// UTC calendar fields (year, month, day, hour, minute, second) of a Unix time
/// (Howard Hinnant's days-from-civil inverse).
pub(crate) fn civil_from_unix(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, secs / 3600, (secs % 3600) / 60, secs % 60)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ai_batch_core::requests::custom_id;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(1_767_261_600), (2026, 1, 1, 10, 0, 0));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        // Before the epoch: the day and the time of day both count backwards.
        assert_eq!(civil_from_unix(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn job_ids_are_valid_and_distinct() {
        let a = new_job_id();
        let b = new_job_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert!(id.starts_with("job_"));
            ai_batch_core::requests::validate_job_id(id).unwrap();
            assert!(ai_batch_core::requests::is_valid_custom_id(&custom_id(
                id,
                i64::MAX
            )));
        }
    }
}
