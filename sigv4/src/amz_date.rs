//! The dates AWS signatures carry: `YYYYMMDDTHHMMSSZ` (SigV4's
//! `X-Amz-Date`) and HTTP dates (`Date`, as SigV2 and botocore send it).

/// Unix seconds of `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// `YYYYMMDDTHHMMSSZ` of unix seconds.
pub fn format_amz_date(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds of an HTTP date: `Tue, 27 Mar 2007 19:36:42 +0000`, with
/// `GMT`, `UTC`, `Z` or a `±HHMM` offset (RFC 1123 / 2822, what botocore's
/// `formatdate` and browsers send); the weekday is optional and not checked.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_, rest)) => rest.trim_start(),
        None => s,
    };
    let mut it = s.split_ascii_whitespace();
    let d: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let y: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    let zone = it.next().unwrap_or("GMT");
    if it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as i64 + 1;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let se: i64 = t.next()?.parse().ok()?;
    if t.next().is_some() || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let offset = match zone {
        "GMT" | "UTC" | "UT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let n: i64 = z[1..].parse().ok()?;
            let secs = (n / 100) * 3600 + (n % 100) * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        for unix in [0, 1_369_353_600, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(unix)), Some(unix));
        }
        assert_eq!(format_amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(parse_amz_date("20130524T000000"), None);
        assert_eq!(parse_amz_date("2013052xT000000Z"), None);
    }

    #[test]
    fn http_dates_parse() {
        let t = parse_amz_date("20070327T193642Z").unwrap();
        assert_eq!(parse_http_date("Tue, 27 Mar 2007 19:36:42 +0000"), Some(t));
        assert_eq!(parse_http_date("Tue, 27 Mar 2007 19:36:42 GMT"), Some(t));
        assert_eq!(parse_http_date("Tue, 27 Mar 2007 19:36:42 -0000"), Some(t));
        assert_eq!(parse_http_date("27 Mar 2007 21:36:42 +0200"), Some(t));
        assert_eq!(parse_http_date("Tue, 27 Foo 2007 19:36:42 GMT"), None);
        assert_eq!(parse_http_date("Tue, 27 Mar 2007 25:36:42 GMT"), None);
        assert_eq!(parse_http_date("Tue, 27 Mar 2007 19:36:42 GMT extra"), None);
    }
}
