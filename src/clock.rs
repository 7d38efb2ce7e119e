//! The one owner of "now" and of the hospital's time zone.
//!
//! Schedules are written in the hospital's wall-clock time (`time_zone` in
//! pacsbak.toml, an IANA name such as `Asia/Shanghai`; the machine's zone when
//! absent). The offset is looked up for every instant converted, never cached, so
//! a time taken before a daylight-saving change converts with the offset it had
//! then. Tests replace the system clock with a manual one and move it by hand, so
//! schedules are tested without sleeping.

use std::sync::{Arc, Mutex, OnceLock};

use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::error::{Error, ErrorKind, Result};

/// A clock and the zone wall-clock times are read in.
#[derive(Clone, Debug)]
pub struct Clock {
    zone: jiff::tz::TimeZone,
    zone_name: String,
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    System,
    Manual(Arc<Mutex<OffsetDateTime>>),
}

/// Where a wall-clock time falls on the time line of a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instant {
    /// It happens once.
    Unique(OffsetDateTime),
    /// It does not happen (skipped by a change to summer time); the instant is
    /// the wall time shifted forward by the gap, as RFC 5545 and java.time do.
    Skipped(OffsetDateTime),
    /// It happens twice (the hour repeated at the change back).
    Twice(OffsetDateTime, OffsetDateTime),
}

impl Clock {
    /// The machine's clock, in `zone` (an IANA name; `None`: the machine's zone).
    pub fn system(zone: Option<&str>) -> Result<Clock> {
        let (zone, zone_name) = lookup_zone(zone)?;
        Ok(Clock {
            zone,
            zone_name,
            source: Source::System,
        })
    }

    /// A clock that stands at `start` until moved with [`Clock::set`] (tests, the
    /// sandbox's simulated time).
    pub fn manual(start: OffsetDateTime, zone: &str) -> Result<Clock> {
        let (zone, zone_name) = lookup_zone(Some(zone))?;
        Ok(Clock {
            zone,
            zone_name,
            source: Source::Manual(Arc::new(Mutex::new(start))),
        })
    }

    /// Moves a manual clock (and every clone of it) to `t`; a system clock ignores it.
    pub fn set(&self, t: OffsetDateTime) {
        if let Source::Manual(m) = &self.source {
            *m.lock().unwrap_or_else(|p| p.into_inner()) = t;
        }
    }

    /// The zone's name, as configured or as the machine reports it.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// Now, in UTC.
    pub fn now(&self) -> OffsetDateTime {
        match &self.source {
            Source::System => OffsetDateTime::now_utc(),
            Source::Manual(m) => *m.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// The zone's offset from UTC at instant `t`.
    pub fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        let ts =
            jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let secs = self.zone.to_offset(ts).seconds();
        UtcOffset::from_whole_seconds(secs).unwrap_or(UtcOffset::UTC)
    }

    /// Instant `t` in the zone's wall-clock time, with the offset in force at `t`.
    pub fn local(&self, t: OffsetDateTime) -> PrimitiveDateTime {
        let l = t.to_offset(self.offset_at(t));
        PrimitiveDateTime::new(l.date(), l.time())
    }

    /// Now, in the zone's wall-clock time.
    pub fn local_now(&self) -> PrimitiveDateTime {
        self.local(self.now())
    }

    /// Where wall-clock time `wall` falls in the zone.
    pub fn instant_of(&self, wall: PrimitiveDateTime) -> Instant {
        use jiff::tz::AmbiguousOffset;
        let with = |off: jiff::tz::Offset| {
            UtcOffset::from_whole_seconds(off.seconds())
                .map(|o| wall.assume_offset(o).to_offset(UtcOffset::UTC))
                .unwrap_or_else(|_| wall.assume_utc())
        };
        let Ok(civil) = civil_of(wall) else {
            return Instant::Unique(wall.assume_utc());
        };
        match self.zone.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => Instant::Unique(with(offset)),
            // Shifted forward by the gap: the old offset applied to the new side.
            AmbiguousOffset::Gap { before, .. } => Instant::Skipped(with(before)),
            AmbiguousOffset::Fold { before, after } => Instant::Twice(with(before), with(after)),
        }
    }
}

fn civil_of(t: PrimitiveDateTime) -> std::result::Result<jiff::civil::DateTime, jiff::Error> {
    jiff::civil::DateTime::new(
        t.year() as i16,
        u8::from(t.month()) as i8,
        t.day() as i8,
        t.hour() as i8,
        t.minute() as i8,
        t.second() as i8,
        0,
    )
}

fn lookup_zone(name: Option<&str>) -> Result<(jiff::tz::TimeZone, String)> {
    match name {
        Some(n) => jiff::tz::TimeZone::get(n)
            .map(|z| (z, n.to_string()))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "time_zone {n:?} is not a known IANA time zone ({e}): use a name such as \"Asia/Shanghai\""
                    ),
                )
                .with("key", "time_zone")
            }),
        None => {
            let z = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
            let name = z.iana_name().unwrap_or("UTC").to_string();
            Ok((z, name))
        }
    }
}

static CURRENT: OnceLock<Clock> = OnceLock::new();

/// Makes `clock` the process's clock (the CLI does it once the configuration is
/// read); later calls are ignored, so a process never changes zone half-way.
pub fn install(clock: Clock) {
    let _ = CURRENT.set(clock);
}

/// The process's clock: the installed one, else the machine's clock and zone.
pub fn current() -> Clock {
    CURRENT
        .get_or_init(|| {
            Clock::system(None).unwrap_or(Clock {
                zone: jiff::tz::TimeZone::UTC,
                zone_name: "UTC".into(),
                source: Source::System,
            })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn offsets_are_those_in_force_at_each_instant() {
        let c = Clock::manual(datetime!(2026-03-29 00:00 UTC), "Europe/Berlin").unwrap();
        // Winter, then summer: the same clock converts each with its own offset.
        assert_eq!(
            c.local(datetime!(2026-03-29 00:30 UTC)),
            datetime!(2026-03-29 01:30)
        );
        assert_eq!(
            c.local(datetime!(2026-03-29 01:30 UTC)),
            datetime!(2026-03-29 03:30)
        );
        assert_eq!(
            c.instant_of(datetime!(2026-03-29 02:30)),
            Instant::Skipped(datetime!(2026-03-29 01:30 UTC))
        );
        assert_eq!(
            c.instant_of(datetime!(2026-10-25 02:30)),
            Instant::Twice(
                datetime!(2026-10-25 00:30 UTC),
                datetime!(2026-10-25 01:30 UTC)
            )
        );
        assert_eq!(
            c.instant_of(datetime!(2026-07-01 12:00)),
            Instant::Unique(datetime!(2026-07-01 10:00 UTC))
        );
        c.set(datetime!(2026-07-01 10:00 UTC));
        assert_eq!(c.local_now(), datetime!(2026-07-01 12:00));
    }

    #[test]
    fn an_unknown_zone_names_the_key() {
        let e = Clock::system(Some("Mars/Olympus_Mons")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.context("key"), Some("time_zone"));
    }
}
