//! After-hours: a day-shift role working at night or at the weekend. Weak alone (people
//! stay late), telling together with other signals (healthcare.md, "after-hours").

use ehrgate_sdk::Severity;
use ehrgate_sdk::time::{in_daily_window, local_time};

use crate::access::Access;
use crate::config::AfterHours;
use crate::score::Signal;

pub fn detect(config: &AfterHours, access: &Access) -> Option<Signal> {
    if config.roles.is_empty() || !access.has_any_role(&config.roles) {
        return None;
    }
    let now = local_time(access.request.time_ms, config.utc_offset_minutes);
    let weekend = config.weekends_off && now.is_weekend();
    let outside = !in_daily_window(now.minute_of_day, config.start.0, config.end.0);
    if !weekend && !outside {
        return None;
    }
    let clock = |minutes: u16| format!("{:02}:{:02}", minutes / 60, minutes % 60);
    Some(Signal {
        rule_id: "anomaly.after-hours",
        severity: Severity::Low,
        weight: config.weight,
        detail: format!(
            "day-shift role at {} local{} (working hours {}-{})",
            clock(now.minute_of_day),
            if weekend { " on a weekend" } else { "" },
            clock(config.start.0),
            clock(config.end.0)
        ),
    })
}
