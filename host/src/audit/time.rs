//! Time as the audit log writes it: RFC 3339 in UTC with milliseconds, always in the one
//! 24-byte form `YYYY-MM-DDTHH:MM:SS.mmmZ`, so times compare as strings and the checkpoint
//! signature covers fixed-length bytes. Civil dates come from Howard Hinnant's
//! `days_from_civil` / `civil_from_days` algorithms (proleptic Gregorian calendar).

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: u64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    millis_of(SystemTime::now())
}

/// Milliseconds since the Unix epoch of `time` (0 before the epoch).
pub fn millis_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Days since the Unix epoch (the UTC day) of `millis`.
pub fn day_of(millis: u64) -> u64 {
    millis / MS_PER_DAY
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(millis: u64) -> String {
    let (year, month, day) = civil_from_days(day_of(millis));
    let in_day = millis % MS_PER_DAY;
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// `YYYYMMDD` of a day since the epoch, as in file names.
pub fn compact_date(day: u64) -> String {
    let (year, month, day) = civil_from_days(day);
    format!("{year:04}{month:02}{day:02}")
}

/// The day since the epoch of a `YYYYMMDD` string.
pub fn day_of_compact_date(date: &str) -> Option<u64> {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = date[0..4].parse().ok()?;
    let month = date[4..6].parse().ok()?;
    let day = date[6..8].parse().ok()?;
    days_from_civil(year, month, day)
}

/// Whether `time` has exactly the form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn is_canonical(time: &str) -> bool {
    parse(time).is_some_and(|millis| format_millis(millis) == time)
}

/// Parses a time given by a person: `YYYY-MM-DD` (midnight UTC), or
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z` or nothing (both UTC), into milliseconds
/// since the epoch.
pub fn parse(input: &str) -> Option<u64> {
    let input = input.strip_suffix('Z').unwrap_or(input);
    let (date, clock) = match input.split_once(['T', ' ']) {
        Some((date, clock)) => (date, Some(clock)),
        None => (input, None),
    };
    let mut date_parts = date.split('-');
    let year: u64 = number(date_parts.next()?, 4)?;
    let month: u64 = number(date_parts.next()?, 2)?;
    let day: u64 = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let mut millis = days * MS_PER_DAY;
    if let Some(clock) = clock {
        let (hms, fraction) = match clock.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (clock, None),
        };
        let mut parts = hms.split(':');
        let hour = number(parts.next()?, 2)?;
        let minute = number(parts.next()?, 2)?;
        let second = match parts.next() {
            Some(second) => number(second, 2)?,
            None => 0,
        };
        if parts.next().is_some() || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let milli = match fraction {
            Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<3}");
                padded[..3].parse::<u64>().ok()?
            }
            Some(_) => return None,
            None => 0,
        };
        millis += hour * 3_600_000 + minute * 60_000 + second * 1000 + milli;
    }
    Some(millis)
}

fn number(text: &str, digits: usize) -> Option<u64> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        for millis in [
            0,
            951_782_400_000,     // 2000-02-29
            1_767_225_600_123,   // 2026-01-01T00:00:00.123Z
            4_102_444_799_999,   // 2099-12-31T23:59:59.999Z
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        ] {
            let text = format_millis(millis);
            assert_eq!(text.len(), 24, "{text}");
            assert_eq!(parse(&text), Some(millis), "{text}");
            assert!(is_canonical(&text));
        }
        assert_eq!(format_millis(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn parses_what_people_type() {
        let midnight = parse("2026-01-01").unwrap();
        assert_eq!(format_millis(midnight), "2026-01-01T00:00:00.000Z");
        assert_eq!(parse("2026-01-01T10:30Z"), Some(midnight + 37_800_000));
        assert_eq!(parse("2026-01-01T10:30:05"), Some(midnight + 37_805_000));
        assert_eq!(parse("2026-01-01 10:30:05.5Z"), Some(midnight + 37_805_500));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-01-01",
            "2026-01-01T25:00",
            "yesterday",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn compact_dates_round_trip() {
        let day = day_of(1_767_225_600_123);
        assert_eq!(compact_date(day), "20260101");
        assert_eq!(day_of_compact_date("20260101"), Some(day));
        assert_eq!(day_of_compact_date("2026011"), None);
    }
}
