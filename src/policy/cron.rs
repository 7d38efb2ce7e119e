//! Cron expressions, evaluated by the `cron` crate.
//!
//! Two forms are accepted: the five fields people write in a crontab (minute hour
//! day-of-month month day-of-week), and six with seconds first (`*/5 * * * * *`, for
//! second-scale schedules in tests and the sandbox). Both read the day of the week
//! as crontab does (0-7, Sunday as 0 or 7, or names) and combine day-of-month and
//! day-of-week as crontab does: when both are restricted, either matching is enough.
//! The crate numbers days 1-7 from Sunday and requires both days to match, so the
//! day-of-week field is rewritten to names, and a schedule restricting both days is
//! two schedules whose firings are merged (docs/decisions/0010).
//!
//! The crate matches wall-clock times; turning one into an instant, across
//! daylight-saving changes, is [`Cron::next_instant_after`] (docs/decisions/0008).

use std::str::FromStr;

use chrono::TimeZone;
use cron::TimeUnitSpec;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::clock::{Clock, Instant};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Cron {
    text: String,
    /// One schedule, or two (day-of-month, day-of-week) whose firings merge.
    schedules: Vec<cron::Schedule>,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.text == other.text
    }
}

impl Eq for Cron {}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIELD_NAMES: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// The days a crontab day-of-week field names (bit 0 = Sunday); `*` is `None`.
fn crontab_weekdays(s: &str) -> Result<Option<u8>, String> {
    if s == "*" || s == "?" {
        return Ok(None);
    }
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = DAYS.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32);
        }
        t.parse::<u32>()
            .map_err(|_| format!("{t:?} is neither 0-7 nor a day name (SUN..SAT)"))
    };
    let mut bits = 0u8;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("step {st:?} must be a positive number"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { 7 } else { v })
        };
        if b > 7 || a > b {
            return Err(format!("{part:?} is outside 0-7"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << (v % 7);
            v += step;
        }
    }
    Ok(Some(bits))
}

/// The crate's last message line ("Minutes must be less than 59...").
fn crate_message(e: &cron::error::Error) -> String {
    let text = e.to_string();
    text.lines().last().unwrap_or_default().trim().to_string()
}

fn to_chrono(t: PrimitiveDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::Utc
        .timestamp_opt(t.assume_utc().unix_timestamp(), 0)
        .single()
}

fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<PrimitiveDateTime> {
    let o = OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()?;
    Some(PrimitiveDateTime::new(o.date(), o.time()))
}

/// Read from TOML as a string; a bad expression is a TOML error, so it names the
/// file, line and key like every other.
impl<'de> serde::Deserialize<'de> for Cron {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cron, D::Error> {
        let text = String::deserialize(d)?;
        Cron::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Cron {
    /// Parses `expr`; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let mut f: Vec<&str> = expr.split_whitespace().collect();
        match f.len() {
            5 => f.insert(0, "0"),
            6 => {}
            _ => {
                return Err(format!(
                    "{expr:?}: a schedule has 5 fields (minute hour day-of-month month day-of-week), e.g. \"*/15 * * * *\", or 6 with seconds first"
                ))
            }
        }
        let days =
            crontab_weekdays(f[5]).map_err(|e| format!("{expr:?}: day-of-week field: {e}"))?;
        let names = days.map(|bits| {
            (0..7)
                .filter(|d| bits & (1 << d) != 0)
                .map(|d| DAYS[d])
                .collect::<Vec<_>>()
                .join(",")
        });
        let dow = names.as_deref().unwrap_or("*");
        // Each field alone, so that the error names the field.
        for (i, name) in FIELD_NAMES.iter().enumerate().take(5) {
            let mut probe = ["0", "*", "*", "*", "*", "*"];
            probe[i] = f[i];
            cron::Schedule::from_str(&probe.join(" "))
                .map_err(|e| format!("{expr:?}: {name} field: {}", crate_message(&e)))?;
        }
        let build = |dom: &str, dow: &str| {
            cron::Schedule::from_str(&format!("{} {} {} {dom} {} {dow}", f[0], f[1], f[2], f[4]))
                .map_err(|e| format!("{expr:?}: {}", crate_message(&e)))
        };
        // As Vixie cron: a day field starting with `*` (`*/2` too) does not count
        // as restricted for the either-day rule.
        let starred = |x: &str| x.starts_with('*') || x == "?";
        let schedules = if !starred(f[3]) && !starred(f[5]) {
            vec![build(f[3], "*")?, build("*", dow)?]
        } else {
            vec![build(f[3], dow)?]
        };
        Ok(Cron {
            text: expr.to_string(),
            schedules,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the schedule fires at `t` (to the second).
    pub fn matches(&self, t: PrimitiveDateTime) -> bool {
        to_chrono(t).is_some_and(|c| self.schedules.iter().any(|s| s.includes(c)))
    }

    /// The latest firing at or before `t` within `horizon`.
    pub fn last_at_or_before(
        &self,
        t: PrimitiveDateTime,
        horizon: Duration,
    ) -> Option<PrimitiveDateTime> {
        let from = to_chrono(t.replace_nanosecond(0).ok()? + Duration::seconds(1))?;
        let best = self
            .schedules
            .iter()
            .filter_map(|s| s.after(&from).next_back())
            .max()?;
        from_chrono(best).filter(|&b| b >= t - horizon)
    }

    /// The first firing after `t`, within a year.
    pub fn next_after(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        let from = to_chrono(t.replace_nanosecond(0).ok()?)?;
        let best = self
            .schedules
            .iter()
            .filter_map(|s| s.after(&from).next())
            .min()?;
        from_chrono(best).filter(|&b| b <= t + Duration::days(366))
    }

    /// Whether the schedule fires in every hour of the day (`*/15 * * * *`): such a
    /// schedule keeps firing through the hour repeated at the end of summer time,
    /// as its interval promises; one that names its hours fires once.
    pub fn fires_every_hour(&self) -> bool {
        self.schedules.iter().all(|s| s.hours().is_all())
    }

    /// The first instant after `after` at which the schedule fires, in `clock`'s
    /// zone, across daylight-saving changes: a wall time skipped at the change to
    /// summer time fires shifted forward by the gap (once); a wall time that happens
    /// twice at the change back fires at its first occurrence, and also at its second
    /// when the schedule fires every hour (docs/decisions/0008).
    pub fn next_instant_after(
        &self,
        after: OffsetDateTime,
        clock: &Clock,
    ) -> Option<OffsetDateTime> {
        // Wall times are not monotonic in instants around a change back, so look
        // from a little before `after`'s wall time and keep the earliest instant
        // past `after`; zones move their clocks by at most a few hours.
        const MARGIN: Duration = Duration::hours(3);
        let start = clock.local(after);
        // Far from a change of offset, wall time runs with real time: the next
        // wall firing is the answer (a second-scale schedule would otherwise walk
        // hours of firings on every call).
        if clock.offset_at(after - MARGIN) == clock.offset_at(after + MARGIN) {
            let wall = self.next_after(start)?;
            return Some(match clock.instant_of(wall) {
                Instant::Unique(t) | Instant::Skipped(t) | Instant::Twice(t, _) => t,
            });
        }
        let mut wall = start - MARGIN;
        let mut best: Option<OffsetDateTime> = None;
        loop {
            wall = self.next_after(wall)?;
            if let Some(b) = best {
                if wall > clock.local(b) + MARGIN {
                    return Some(b);
                }
            } else if wall > start + Duration::days(367) {
                return None;
            }
            let candidates = match clock.instant_of(wall) {
                Instant::Unique(t) | Instant::Skipped(t) => [Some(t), None],
                Instant::Twice(first, second) => {
                    [Some(first), self.fires_every_hour().then_some(second)]
                }
            };
            for t in candidates.into_iter().flatten() {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Every firing in `[from, to)`, as a scheduler would see them: ask for the
    /// next instant, move the test clock there, fire, repeat.
    fn firings(
        cron: &Cron,
        clock: &Clock,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<OffsetDateTime> {
        clock.set(from);
        let mut out = Vec::new();
        while let Some(t) = cron.next_instant_after(clock.now(), clock) {
            if t >= to {
                break;
            }
            clock.set(t);
            out.push(t);
        }
        out
    }

    #[test]
    fn schedules_fire_once_at_the_right_instant_across_daylight_saving_changes() {
        let clock = Clock::manual(datetime!(2026-03-28 00:00 UTC), "Europe/Berlin").unwrap();
        let nightly = Cron::parse("30 2 * * *").unwrap();
        let logs = Cron::parse("*/15 * * * *").unwrap();

        // Spring: 2026-03-29 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        let spring = firings(
            &nightly,
            &clock,
            datetime!(2026-03-28 00:00 UTC),
            datetime!(2026-03-31 00:00 UTC),
        );
        assert_eq!(
            spring,
            [
                datetime!(2026-03-28 01:30 UTC), // 02:30 CET
                datetime!(2026-03-29 01:30 UTC), // 03:30 CEST: shifted by the gap, once
                datetime!(2026-03-30 00:30 UTC), // 02:30 CEST
            ]
        );
        // Logs every 15 minutes of real time, straight through the gap.
        let l = firings(
            &logs,
            &clock,
            datetime!(2026-03-29 00:00 UTC),
            datetime!(2026-03-29 03:00 UTC),
        );
        let expected: Vec<_> = (1..12)
            .map(|i| datetime!(2026-03-29 00:00 UTC) + Duration::minutes(15 * i))
            .collect();
        assert_eq!(l, expected);

        // Autumn: 2026-10-25 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let autumn = firings(
            &nightly,
            &clock,
            datetime!(2026-10-24 00:00 UTC),
            datetime!(2026-10-27 00:00 UTC),
        );
        assert_eq!(
            autumn,
            [
                datetime!(2026-10-24 00:30 UTC), // 02:30 CEST
                datetime!(2026-10-25 00:30 UTC), // the first 02:30 only
                datetime!(2026-10-26 01:30 UTC), // 02:30 CET
            ]
        );
        // Logs keep their interval through the repeated hour: 12 in 3 real hours.
        let l = firings(
            &logs,
            &clock,
            datetime!(2026-10-24 23:00 UTC),
            datetime!(2026-10-25 02:00 UTC),
        );
        let expected: Vec<_> = (1..12)
            .map(|i| datetime!(2026-10-24 23:00 UTC) + Duration::minutes(15 * i))
            .collect();
        assert_eq!(l, expected);
    }

    #[test]
    fn typical_pacs_plan() {
        let full = Cron::parse("0 1 * * SUN").unwrap();
        let diff = Cron::parse("0 1 * * 1-6").unwrap();
        let log = Cron::parse("*/15 * * * *").unwrap();
        let sun = datetime!(2026-11-29 01:00); // a Sunday
        assert!(full.matches(sun) && !diff.matches(sun) && log.matches(sun));
        assert!(diff.matches(datetime!(2026-11-30 01:00)));
        assert!(!log.matches(datetime!(2026-11-30 01:07)));
        assert_eq!(
            log.next_after(datetime!(2026-11-30 01:07)),
            Some(datetime!(2026-11-30 01:15))
        );
        assert_eq!(
            full.last_at_or_before(datetime!(2026-12-01 12:00), Duration::days(8)),
            Some(sun)
        );
        assert!(Cron::parse("0 1 * * 7").unwrap().matches(sun));
    }

    #[test]
    fn bad_expressions_say_which_field() {
        assert!(Cron::parse("* * *").unwrap_err().contains("5 fields"));
        assert!(Cron::parse("61 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("0 25 * * *").unwrap_err().contains("hour"));
        assert!(Cron::parse("0 1 * * FUNDAY")
            .unwrap_err()
            .contains("day-of-week"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("0 1 * * 8")
            .unwrap_err()
            .contains("day-of-week"));
    }

    #[test]
    fn days_combine_as_crontab_does() {
        // Both restricted: the 1st of the month, or any Friday.
        let c = Cron::parse("0 9 1 * 5").unwrap();
        assert!(c.matches(datetime!(2026-12-01 09:00))); // a Tuesday, the 1st
        assert!(c.matches(datetime!(2026-12-04 09:00))); // a Friday
        assert!(!c.matches(datetime!(2026-12-02 09:00)));
        assert_eq!(
            c.next_after(datetime!(2026-12-01 09:00)),
            Some(datetime!(2026-12-04 09:00))
        );
        // Sunday is 0 and 7; ranges and steps count from Sunday as crontab's do.
        let weekdays = Cron::parse("0 9 * * 1-5").unwrap();
        assert!(!weekdays.matches(datetime!(2026-12-06 09:00)));
        assert!(weekdays.matches(datetime!(2026-12-07 09:00)));
        let every_other = Cron::parse("0 9 * * */2").unwrap(); // SUN, TUE, THU, SAT
        assert!(every_other.matches(datetime!(2026-12-06 09:00)));
        assert!(!every_other.matches(datetime!(2026-12-07 09:00)));
        assert!(every_other.matches(datetime!(2026-12-08 09:00)));
        // A starred day-of-week field is not "restricted": both days must match.
        let c = Cron::parse("0 9 1-7 * */7").unwrap(); // the first Sunday of the month
        assert!(c.matches(datetime!(2026-12-06 09:00))); // Sunday the 6th
        assert!(!c.matches(datetime!(2026-12-01 09:00))); // Tuesday the 1st
        assert!(!c.matches(datetime!(2026-12-13 09:00))); // Sunday the 13th
    }

    #[test]
    fn six_fields_give_second_scale_schedules() {
        let c = Cron::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            c.next_after(datetime!(2026-12-01 09:00:01)),
            Some(datetime!(2026-12-01 09:00:05))
        );
        assert_eq!(
            c.last_at_or_before(datetime!(2026-12-01 09:00:07), Duration::minutes(1)),
            Some(datetime!(2026-12-01 09:00:05))
        );
        let clock = Clock::manual(datetime!(2026-12-01 00:00:03 UTC), "Asia/Shanghai").unwrap();
        assert_eq!(
            c.next_instant_after(clock.now(), &clock),
            Some(datetime!(2026-12-01 00:00:05 UTC))
        );
    }
}
