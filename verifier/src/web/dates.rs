//! Times as people read them: dates in UTC (`2024-05-03 14:00:00Z`), never
//! unix seconds; and the times a person types back (the page's "at" field).

use std::fmt::Write as _;

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// `unix` as `YYYY-MM-DD HH:MM:SSZ` (UTC). A time past the calendar's range
/// (year beyond ±9999) is written as unix seconds, never refused.
pub fn utc(unix: i64) -> String {
    let mut s = String::with_capacity(20);
    write_utc(&mut s, unix);
    s
}

/// [`utc`], appended to `out`.
pub fn write_utc(out: &mut String, unix: i64) {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => {
            let _ = write!(
                out,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        Err(_) => {
            let _ = write!(out, "unix {unix}");
        }
    }
}

/// Longest time text accepted.
const MAX_TEXT: usize = 40;

/// A moment typed by a person, read as UTC: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`
/// or `YYYY-MM-DD HH:MM:SS` (a `T` for the space and a trailing `Z` or
/// ` UTC` are accepted), or unix seconds. A date alone is its end of day
/// (23:59:59): "standing on 3 May" includes what happened that day.
pub fn parse_utc(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.len() > MAX_TEXT {
        return Err(format!("a time is at most {MAX_TEXT} characters"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i64>()
            .map_err(|e| format!("`{t}` as unix seconds: {e}"));
    }
    let t = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix(" UTC"))
        .unwrap_or(t);
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c.trim())),
        None => (t, None),
    };
    let bad = || {
        format!(
            "`{}` is not a time: write YYYY-MM-DD, YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS (UTC)",
            text.trim()
        )
    };
    let day_format =
        time::format_description::parse_borrowed::<2>("[year]-[month]-[day]").map_err(|_| bad())?;
    let day = Date::parse(date, &day_format).map_err(|_| bad())?;
    let clock = match clock {
        None => Time::from_hms(23, 59, 59).map_err(|_| bad())?,
        Some(c) => {
            let f = if c.len() > 5 {
                "[hour]:[minute]:[second]"
            } else {
                "[hour]:[minute]"
            };
            let f = time::format_description::parse_borrowed::<2>(f).map_err(|_| bad())?;
            Time::parse(c, &f).map_err(|_| bad())?
        }
    };
    Ok(PrimitiveDateTime::new(day, clock)
        .assume_utc()
        .unix_timestamp())
}

/// The value the page's "at" field shows for `unix` (what [`parse_utc`] reads back).
pub fn field(unix: i64) -> String {
    let mut s = utc(unix);
    s.pop(); // the `Z`: the field is labelled UTC
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_714_744_800), "2024-05-03 14:00:00Z");
        assert_eq!(utc(i64::MAX), format!("unix {}", i64::MAX));
        assert_eq!(field(1_714_744_800), "2024-05-03 14:00:00");
    }

    #[test]
    fn typed_times_are_read_as_utc() {
        let t = 1_714_744_800;
        for s in [
            "2024-05-03 14:00:00",
            "2024-05-03T14:00:00Z",
            "2024-05-03 14:00",
            "2024-05-03T14:00",
            " 2024-05-03 14:00:00 UTC ",
            "1714744800",
        ] {
            assert_eq!(parse_utc(s), Ok(t), "{s}");
        }
        assert_eq!(parse_utc("2024-05-03"), Ok(t + 10 * 3600 - 1));
        assert_eq!(parse_utc(&field(t)), Ok(t));
        for s in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-05-03 25:00",
            "2024-05-03 14:00:00+02:00",
            &"9".repeat(41),
            "99999999999999999999",
        ] {
            assert!(parse_utc(s).is_err(), "{s}");
        }
    }
}
