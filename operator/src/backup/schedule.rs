//! The pure half of scheduled backups: parsing a cron schedule, when the next
//! backup is due, what a backup is named, and which old ones go.

use std::str::FromStr as _;

use croner::Cron;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;

/// A five-field cron schedule (minute hour day-of-month month day-of-week), UTC.
pub fn parse(schedule: &str) -> Result<Cron, String> {
    let fields = schedule.split_whitespace().count();
    if fields != 5 {
        return Err(format!("schedule {schedule:?} has {fields} fields; a cron schedule has five (minute hour day month weekday)"));
    }
    Cron::from_str(schedule).map_err(|e| format!("schedule {schedule:?}: {e}"))
}

/// When the next scheduled backup is due: the first tick after the last
/// one's start, or, before the first, after the `KvBackup` was created. A due
/// time in the past means now (ticks missed while the operator was away are
/// made up by one backup, not one per tick).
pub fn next_due(cron: &Cron, last: Option<Timestamp>, created: Timestamp) -> Result<Timestamp, String> {
    let from = last.unwrap_or(created).to_zoned(TimeZone::UTC);
    cron.find_next_occurrence(&from, false).map(|z| z.timestamp()).map_err(|e| format!("no next time for the schedule: {e}"))
}

/// `<prefix>-YYYYMMDD-HHMMSS` (UTC): names sort by time.
pub fn backup_name(prefix: &str, at: Timestamp) -> String {
    format!("{prefix}-{}", at.strftime("%Y%m%d-%H%M%S"))
}

/// Of the backups `names` in a location, those this `KvBackup` took (named
/// `<prefix>-YYYYMMDD-HHMMSS`) beyond the newest `keep`, oldest first; and
/// those it keeps, oldest first.
pub fn prune(names: &[String], prefix: &str, keep: usize) -> (Vec<String>, Vec<String>) {
    let ours = |n: &&String| {
        n.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(|stamp| {
            stamp.len() == 15 && stamp.as_bytes()[8] == b'-' && stamp.bytes().enumerate().all(|(i, b)| i == 8 || b.is_ascii_digit())
        })
    };
    let mut mine: Vec<String> = names.iter().filter(ours).cloned().collect();
    mine.sort();
    let cut = mine.len().saturating_sub(keep);
    let kept = mine.split_off(cut);
    (mine, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn schedules_are_five_field_cron() {
        assert!(parse("0 3 * * *").is_ok());
        assert!(parse("*/15 * * * 1-5").is_ok());
        assert!(parse("0 0 3 * * *").is_err(), "six fields");
        assert!(parse("nightly").is_err());
        assert!(parse("61 * * * *").is_err());
    }

    #[test]
    fn the_next_backup_is_the_first_tick_after_the_last() {
        let cron = parse("0 3 * * *").expect("cron");
        let created = ts("2026-12-01T10:00:00Z");
        assert_eq!(next_due(&cron, None, created), Ok(ts("2026-12-02T03:00:00Z")), "first: after creation");
        let last = ts("2026-12-02T03:00:01Z");
        assert_eq!(next_due(&cron, Some(last), created), Ok(ts("2026-12-03T03:00:00Z")));
        // Away for days: the next is due at once (in the past), and after it runs, tomorrow.
        assert!(next_due(&cron, Some(last), created).expect("due") < ts("2026-12-07T12:00:00Z"));
        assert_eq!(next_due(&cron, Some(ts("2026-12-07T12:00:00Z")), created), Ok(ts("2026-12-08T03:00:00Z")));
    }

    #[test]
    fn only_this_backups_own_oldest_go() {
        assert_eq!(backup_name("nightly", ts("2026-12-07T03:04:05Z")), "nightly-20261207-030405");
        let names: Vec<String> = [
            "nightly-20261205-030000",
            "nightly-20261207-030000",
            "nightly-20261206-030000",
            "nightly-extra-20261201-030000",
            "manual-20261201-030000",
            "nightly-latest",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (gone, kept) = prune(&names, "nightly", 2);
        assert_eq!(gone, vec!["nightly-20261205-030000".to_string()]);
        assert_eq!(kept, vec!["nightly-20261206-030000".to_string(), "nightly-20261207-030000".to_string()]);
        assert_eq!(prune(&names, "nightly", 7).0, Vec::<String>::new());
    }
}
