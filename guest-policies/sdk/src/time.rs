//! Wall-clock time of day from the request's clock (`request.time_ms`), the only clock a
//! policy has, in a fixed UTC offset the operator configures.
//!
//! The offset is fixed on purpose: the sandbox has no time-zone database, and a policy must
//! decide the same way on every replica. Operators whose zone observes daylight saving time
//! change the offset in the module config at the switch (a reload picks it up).

/// The longest offset in use anywhere is UTC+14 (Line Islands) and the shortest UTC-12.
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

const MS_PER_MINUTE: i64 = 60_000;
const MINUTES_PER_DAY: i64 = 24 * 60;

/// A moment as read on a wall clock at a fixed UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// Minutes since local midnight, 0 to 1439.
    pub minute_of_day: u16,
    /// Day of the week, 0 = Monday to 6 = Sunday (ISO 8601 order, from 0).
    pub weekday: u8,
}

impl LocalTime {
    /// The local hour, 0 to 23.
    pub fn hour(self) -> u8 {
        (self.minute_of_day / 60) as u8
    }

    /// Whether this is Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        self.weekday >= 5
    }
}

/// The wall-clock time at `utc_offset_minutes` (east of Greenwich positive) of `time_ms`,
/// milliseconds since the Unix epoch. Offsets beyond ±14 hours are clamped to that.
///
/// ```
/// use ehrgate_sdk::time::local_time;
///
/// // 2026-01-05 07:30 UTC, a Monday, read in Berlin (UTC+1) in winter.
/// let now = local_time(1_767_598_200_000, 60);
/// assert_eq!((now.hour(), now.minute_of_day % 60), (8, 30));
/// assert_eq!(now.weekday, 0); // Monday
/// assert!(!now.is_weekend());
/// ```
pub fn local_time(time_ms: u64, utc_offset_minutes: i32) -> LocalTime {
    let clamped = utc_offset_minutes.clamp(-MAX_UTC_OFFSET_MINUTES, MAX_UTC_OFFSET_MINUTES);
    // u64 milliseconds fit i64 minutes with room to spare.
    let minutes = (time_ms / MS_PER_MINUTE as u64) as i64 + i64::from(clamped);
    let days = minutes.div_euclid(MINUTES_PER_DAY);
    LocalTime {
        minute_of_day: minutes.rem_euclid(MINUTES_PER_DAY) as u16,
        // 1970-01-01 was a Thursday (weekday 3 counting from Monday = 0).
        weekday: (days + 3).rem_euclid(7) as u8,
    }
}

/// Whether `minute_of_day` falls in the daily window from `start` (inclusive) to `end`
/// (exclusive), both minutes since midnight. A window with `start > end` wraps midnight
/// (a night shift from 22:00 to 06:00); `start == end` is the whole day.
///
/// ```
/// use ehrgate_sdk::time::in_daily_window;
///
/// let (night_start, night_end) = (22 * 60, 6 * 60);
/// assert!(in_daily_window(23 * 60 + 15, night_start, night_end));
/// assert!(in_daily_window(2 * 60, night_start, night_end));
/// assert!(!in_daily_window(14 * 60, night_start, night_end));
/// ```
pub fn in_daily_window(minute_of_day: u16, start: u16, end: u16) -> bool {
    match start.cmp(&end) {
        std::cmp::Ordering::Less => (start..end).contains(&minute_of_day),
        std::cmp::Ordering::Greater => minute_of_day >= start || minute_of_day < end,
        std::cmp::Ordering::Equal => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-05 00:00:00 UTC, a Monday.
    const MONDAY_MIDNIGHT_UTC: u64 = 1_767_571_200_000;

    #[test]
    fn reads_the_wall_clock_at_an_offset() {
        let t = local_time(MONDAY_MIDNIGHT_UTC, 0);
        assert_eq!((t.hour(), t.weekday), (0, 0));
        let berlin = local_time(MONDAY_MIDNIGHT_UTC + 7 * 3_600_000, 60);
        assert_eq!((berlin.hour(), berlin.minute_of_day), (8, 480));
        let new_york = local_time(MONDAY_MIDNIGHT_UTC + 3_600_000, -300);
        assert_eq!(
            (new_york.hour(), new_york.weekday),
            (20, 6),
            "Sunday evening"
        );
        assert!(new_york.is_weekend());
    }

    #[test]
    fn windows_may_wrap_midnight() {
        assert!(in_daily_window(7 * 60, 7 * 60, 19 * 60));
        assert!(!in_daily_window(19 * 60, 7 * 60, 19 * 60));
        assert!(in_daily_window(23 * 60, 22 * 60, 6 * 60));
        assert!(in_daily_window(60, 22 * 60, 6 * 60));
        assert!(!in_daily_window(12 * 60, 22 * 60, 6 * 60));
        assert!(in_daily_window(12 * 60, 0, 0));
    }
}
