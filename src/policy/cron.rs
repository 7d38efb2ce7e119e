//! Five-field cron expressions (minute hour day-of-month month day-of-week), as in
//! crontab: `*`, `n`, `a-b`, `*/n`, `a-b/n`, lists, names (`MON`, `JAN`), Sunday as 0
//! or 7. Day-of-month and day-of-week combine as crontab does: when both are
//! restricted, either matching is enough.

use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::clock::{Clock, Instant};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    dom_any: bool,
    dow_any: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn field(s: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<(u64, bool), String> {
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32 + name_base);
        }
        t.parse::<u32>()
            .map_err(|_| format!("{t:?} is not a number"))
    };
    let mut bits = 0u64;
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
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, s == "*"))
}

impl Cron {
    /// Parses `expr`; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "{expr:?}: a schedule has 5 fields (minute hour day-of-month month day-of-week), e.g. \"*/15 * * * *\""
            ));
        }
        let wrap = |name: &str, r: Result<(u64, bool), String>| {
            r.map_err(|e| format!("{expr:?}: {name} field: {e}"))
        };
        let (minutes, _) = wrap("minute", field(f[0], 0, 59, &[], 0))?;
        let (hours, _) = wrap("hour", field(f[1], 0, 23, &[], 0))?;
        let (dom, dom_any) = wrap("day-of-month", field(f[2], 1, 31, &[], 0))?;
        let (months, _) = wrap("month", field(f[3], 1, 12, &MONTHS, 1))?;
        let (mut dow, dow_any) = wrap("day-of-week", field(f[4], 0, 7, &DAYS, 0))?;
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(Cron {
            text: expr.to_string(),
            minutes,
            hours: hours as u32,
            dom: dom as u32,
            months: months as u16,
            dow: (dow & 0x7f) as u8,
            dom_any,
            dow_any,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the schedule fires in the minute of `t`.
    pub fn matches(&self, t: PrimitiveDateTime) -> bool {
        let dom_ok = self.dom & (1 << t.day()) != 0;
        let dow_ok = self.dow & (1 << t.weekday().number_days_from_sunday()) != 0;
        let day_ok = match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom_ok,
            (true, false) => dow_ok,
            (false, false) => dom_ok || dow_ok,
        };
        self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.months & (1 << u8::from(t.month())) != 0
            && day_ok
    }

    /// The latest firing at or before `t` within `horizon`.
    pub fn last_at_or_before(
        &self,
        t: PrimitiveDateTime,
        horizon: Duration,
    ) -> Option<PrimitiveDateTime> {
        let mut c = t.replace_second(0).ok()?.replace_nanosecond(0).ok()?;
        let stop = t - horizon;
        while c >= stop {
            if self.matches(c) {
                return Some(c);
            }
            c -= Duration::minutes(1);
        }
        None
    }

    /// The first firing after `t`, within a year.
    pub fn next_after(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        let mut c = t.replace_second(0).ok()?.replace_nanosecond(0).ok()? + Duration::minutes(1);
        let stop = t + Duration::days(366);
        while c <= stop {
            if self.matches(c) {
                return Some(c);
            }
            c += Duration::minutes(1);
        }
        None
    }
}

impl Cron {
    /// Whether the schedule fires in every hour of the day (`*/15 * * * *`): such a
    /// schedule keeps firing through the hour repeated at the end of summer time,
    /// as its interval promises; one that names its hours fires once.
    pub fn fires_every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
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
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
    }
}
