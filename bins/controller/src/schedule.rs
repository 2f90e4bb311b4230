//! Cron schedules in a time zone: five fields as a Kubernetes CronJob takes
//! them, evaluated by `croner` on the zone's wall clock, with `jiff`
//! turning wall-clock slots into instants (a slot in a daylight-saving gap
//! moves forward; one in a repeated hour runs once).

use std::str::FromStr;

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::DateTime;
use k8s_openapi::jiff::tz::TimeZone;

/// A parsed `spec.backup.schedule` with its `timeZone`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: TimeZone,
}

/// A schedule that cannot be used; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl Schedule {
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError {
                field: "spec.backup.schedule",
                message: format!(
                    "has {fields} fields; use five (minute hour day-of-month month day-of-week), for example \"0 */6 * * *\""
                ),
            });
        }
        let cron = croner::Cron::from_str(expression).map_err(|e| ScheduleError {
            field: "spec.backup.schedule",
            message: format!("{e}; use five cron fields, for example \"0 */6 * * *\""),
        })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| ScheduleError {
                field: "spec.backup.timeZone",
                message: format!(
                    "{name:?} is not a known IANA time zone; use a name such as Europe/Berlin or remove it for UTC"
                ),
            })?,
        };
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut from = after;
        // A repeated wall-clock hour can map a slot back before `after`;
        // look again from there, a bounded number of times.
        for _ in 0..4 {
            let wall = from.to_zoned(self.zone.clone()).datetime();
            let next = self
                .cron
                .find_next_occurrence(&to_chrono(wall)?, false)
                .ok()?;
            let civil = from_chrono(next.naive_utc())?;
            let instant = self
                .zone
                .to_ambiguous_zoned(civil)
                .compatible()
                .ok()?
                .timestamp();
            if instant > after {
                return Some(instant);
            }
            from = civil.to_zoned(TimeZone::UTC).ok()?.timestamp();
            if from <= after {
                from = after + k8s_openapi::jiff::SignedDuration::from_secs(60);
            }
        }
        None
    }

    /// The latest slot in `(last, now]`: missed slots collapse into one run.
    pub fn due(&self, last: Timestamp, now: Timestamp) -> Option<Timestamp> {
        self.previous_at_or_before(now).filter(|slot| *slot > last)
    }

    fn previous_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        let wall = now.to_zoned(self.zone.clone()).datetime();
        let previous = self
            .cron
            .find_previous_occurrence(&to_chrono(wall)?, true)
            .ok()?;
        let civil = from_chrono(previous.naive_utc())?;
        Some(
            self.zone
                .to_ambiguous_zoned(civil)
                .compatible()
                .ok()?
                .timestamp(),
        )
    }

    /// The time between the two slots after `from`: the interval a
    /// healthy cluster's backups are expected at.
    pub fn interval(&self, from: Timestamp) -> Option<std::time::Duration> {
        let first = self.next_after(from)?;
        let second = self.next_after(first)?;
        second.duration_since(first).try_into().ok()
    }
}

/// A wall-clock time as croner takes it (a UTC `DateTime` whose fields are
/// the zone's wall clock).
fn to_chrono(wall: DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let date = chrono::NaiveDate::from_ymd_opt(
        wall.year().into(),
        wall.month() as u32,
        wall.day() as u32,
    )?;
    let time = chrono::NaiveTime::from_hms_opt(
        wall.hour() as u32,
        wall.minute() as u32,
        wall.second() as u32,
    )?;
    Some(chrono::DateTime::from_naive_utc_and_offset(
        date.and_time(time),
        chrono::Utc,
    ))
}

fn from_chrono(wall: chrono::NaiveDateTime) -> Option<DateTime> {
    use chrono::{Datelike, Timelike};
    k8s_openapi::jiff::civil::DateTime::new(
        i16::try_from(wall.year()).ok()?,
        i8::try_from(wall.month()).ok()?,
        i8::try_from(wall.day()).ok()?,
        i8::try_from(wall.hour()).ok()?,
        i8::try_from(wall.minute()).ok()?,
        i8::try_from(wall.second()).ok()?,
        0,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn every_minute_and_every_six_hours() {
        let minute = Schedule::parse("*/1 * * * *", None).unwrap();
        assert_eq!(
            minute.next_after(at("2026-12-02T07:00:30Z")),
            Some(at("2026-12-02T07:01:00Z"))
        );
        assert_eq!(
            minute.next_after(at("2026-12-02T07:01:00Z")),
            Some(at("2026-12-02T07:02:00Z"))
        );
        let six = Schedule::parse("0 */6 * * *", None).unwrap();
        assert_eq!(
            six.next_after(at("2026-12-02T07:00:00Z")),
            Some(at("2026-12-02T12:00:00Z"))
        );
        assert_eq!(
            six.interval(at("2026-12-02T07:00:00Z")),
            Some(std::time::Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn missed_slots_collapse_into_the_latest() {
        let minute = Schedule::parse("* * * * *", None).unwrap();
        assert_eq!(
            minute.due(at("2026-12-02T07:00:00Z"), at("2026-12-02T07:05:30Z")),
            Some(at("2026-12-02T07:05:00Z"))
        );
        assert_eq!(
            minute.due(at("2026-12-02T07:05:00Z"), at("2026-12-02T07:05:30Z")),
            None
        );
    }

    #[test]
    fn sunday_is_zero_as_in_a_cronjob() {
        // 2026-12-06 is a Sunday.
        let sunday = Schedule::parse("0 3 * * 0", None).unwrap();
        assert_eq!(
            sunday.next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-06T03:00:00Z"))
        );
    }

    #[test]
    fn the_time_zone_moves_the_slot_and_daylight_saving_is_handled() {
        let berlin = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1.
        assert_eq!(
            berlin.next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-02T02:00:00Z"))
        );
        // 2027-03-28 02:00-03:00 does not exist in Berlin; 02:30 moves on.
        let gap = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let slot = gap.next_after(at("2027-03-27T12:00:00Z")).unwrap();
        assert_eq!(slot, at("2027-03-28T01:30:00Z"));
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let six = Schedule::parse("0 0 * * * *", None).unwrap_err();
        assert_eq!(six.field, "spec.backup.schedule");
        assert!(six.message.contains("five"), "{}", six.message);
        let bad = Schedule::parse("61 * * * *", None).unwrap_err();
        assert_eq!(bad.field, "spec.backup.schedule");
        let zone = Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(zone.field, "spec.backup.timeZone");
    }
}
