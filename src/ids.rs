//! Identifiers and timestamps as CouchDB writes them: random uuids, lowercase hex, ISO 8601
//! UTC times. A leaf: it uses nothing of settee's, so every module, the store included, may
//! use it without an arrow back.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random 32-hex id, as CouchDB's `_uuids` gives (document ids, session ids, boundaries).
pub fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// Lowercase hex of `bytes` (revision hashes, replication ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `2017-04-05T19:18:15Z`, as `_scheduler` and replication histories show times. A time
/// before 1970 shows as the epoch.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_491_419_895);
        assert_eq!(iso8601(t), "2017-04-05T19:18:15Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // A leap day.
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(iso8601(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn hex_and_uuids() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let (a, b) = (new_uuid(), new_uuid());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
