//! Retention rules: which backups a group keeps (restic's keep-* rules, OR-ed).
//!
//! A rule keeps the newest backup of each of its last N periods (hours, days, ISO
//! weeks, months, years) in the hospital's time zone, or the last N backups, or
//! every backup younger than a duration. A backup any rule keeps is kept.

use std::fmt;

use serde::{Deserialize, Deserializer};
use time::{Duration, PrimitiveDateTime};

/// `[retention]` of a policy (what every target keeps) or of a storage target
/// (what that target keeps besides: a target may keep longer, never shorter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The newest N backups.
    #[serde(default)]
    pub keep_last: u32,
    /// The newest backup of each of the last N hours that have one.
    #[serde(default)]
    pub keep_hourly: u32,
    /// ... days.
    #[serde(default)]
    pub keep_daily: u32,
    /// ... ISO weeks (Monday to Sunday).
    #[serde(default)]
    pub keep_weekly: u32,
    /// ... months.
    #[serde(default)]
    pub keep_monthly: u32,
    /// ... years.
    #[serde(default)]
    pub keep_yearly: u32,
    /// Every backup younger than this, logs included: the point-in-time window.
    #[serde(default)]
    pub keep_within: Option<Age>,
}

impl Rules {
    /// No rule at all: a group under such rules keeps only what is protected.
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    /// The period rules, in the order their reasons are given.
    pub(super) fn periods(&self) -> [(Period, u32); 6] {
        [
            (Period::Last, self.keep_last),
            (Period::Hour, self.keep_hourly),
            (Period::Day, self.keep_daily),
            (Period::Week, self.keep_weekly),
            (Period::Month, self.keep_monthly),
            (Period::Year, self.keep_yearly),
        ]
    }
}

/// The unit of a period rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Period {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The rule's name as the TOML key spells it.
    pub(super) fn key(self) -> &'static str {
        match self {
            Period::Last => "keep_last",
            Period::Hour => "keep_hourly",
            Period::Day => "keep_daily",
            Period::Week => "keep_weekly",
            Period::Month => "keep_monthly",
            Period::Year => "keep_yearly",
        }
    }

    /// The period a local time falls in, as text (also what the plan shows).
    /// `None` for `keep_last`, where every backup is a period of its own.
    pub(super) fn bucket(self, local: PrimitiveDateTime) -> Option<String> {
        let d = local.date();
        match self {
            Period::Last => None,
            Period::Hour => Some(format!("{d} {:02}h", local.hour())),
            Period::Day => Some(d.to_string()),
            Period::Week => {
                let (y, w, _) = d.to_iso_week_date();
                Some(format!("{y}-W{w:02}"))
            }
            Period::Month => Some(format!("{}-{:02}", d.year(), u8::from(d.month()))),
            Period::Year => Some(d.year().to_string()),
        }
    }
}

/// A length of time written `30s`, `45min`, `36h`, `14d`, `8w` or `1y` (365 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl Age {
    /// Parses `30s`, `45min`, `36h`, `14d`, `8w`, `1y`.
    pub fn parse(s: &str) -> Result<Age, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: i64 = n.parse().map_err(|_| {
            format!(
                "{s:?} is not a duration: write a number and a unit, as 45min, 36h, 14d, 8w or 1y"
            )
        })?;
        if n > 100 * 366 {
            return Err(format!("{s:?} is longer than a hundred years"));
        }
        let d = match unit {
            "s" => Duration::seconds(n),
            "min" => Duration::minutes(n),
            "h" => Duration::hours(n),
            "d" => Duration::days(n),
            "w" => Duration::weeks(n),
            "y" => Duration::days(365 * n),
            _ => {
                return Err(format!(
                    "{s:?}: the unit must be s (seconds), min (minutes), h (hours), d (days), w (weeks) or y (years)"
                ))
            }
        };
        Ok(Age(d))
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.whole_seconds();
        if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s % 60 == 0 {
            write!(f, "{}min", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Age, D::Error> {
        let s = String::deserialize(d)?;
        Age::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Age {
    type Err = String;
    fn from_str(s: &str) -> Result<Age, String> {
        Age::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ages_parse_and_print() {
        assert_eq!(Age::parse("36h"), Ok(Age(Duration::hours(36))));
        assert_eq!(Age::parse("2w").map(|a| a.to_string()), Ok("14d".into()));
        assert!(Age::parse("7").is_err());
        // "m" could be minutes or months: refused, "min" is minutes.
        assert!(Age::parse("7m").is_err());
        assert_eq!(
            Age::parse("90min").map(|a| a.to_string()),
            Ok("90min".into())
        );
        assert_eq!(Age::parse("120min").map(|a| a.to_string()), Ok("2h".into()));
        assert_eq!(Age::parse("5s"), Ok(Age(Duration::seconds(5))));
        assert!(Age::parse("d").is_err());
    }

    #[test]
    fn periods_bucket_in_local_time() {
        // 2026-12-31 is a Thursday of ISO week 53 of 2026.
        let t = datetime!(2026-12-31 23:30);
        assert_eq!(Period::Day.bucket(t).as_deref(), Some("2026-12-31"));
        assert_eq!(Period::Week.bucket(t).as_deref(), Some("2026-W53"));
        assert_eq!(Period::Month.bucket(t).as_deref(), Some("2026-12"));
        assert_eq!(Period::Hour.bucket(t).as_deref(), Some("2026-12-31 23h"));
        assert_eq!(Period::Last.bucket(t), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<Rules>("keep_daly = 3").unwrap_err();
        assert!(e.to_string().contains("keep_daly"), "{e}");
        let r: Rules = toml::from_str("keep_daily = 3\nkeep_within = \"2d\"").unwrap();
        assert_eq!(r.keep_within, Some(Age(Duration::days(2))));
    }
}
