//! Typed values that `service.json` writes as numbers or strings: counts or percentages,
//! durations, byte sizes, cron expressions and time zones.
//!
//! Each type parses once, when the spec is read, so the rest of the code never handles the
//! string forms. Every parser here is also what the structural check calls to explain a bad
//! value, so the two never disagree.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A whole number or a percentage of a total, written `5`, `"5"` or `"20%"`.
///
/// Used for `cloud.computing.instances[].capacity` and the rolling-update `max_surge` and
/// `max_unavailable`.
///
/// ```
/// use eas_core::spec::CountOrPercent;
///
/// let share: CountOrPercent = "20%".parse().unwrap();
/// assert_eq!(share.resolve_floor(200), 40);
/// assert_eq!("500".parse::<CountOrPercent>().unwrap(), CountOrPercent::Count(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountOrPercent {
    /// An absolute number.
    Count(u32),
    /// A percentage (`20.0` means 20%) of a total.
    Percent(f64),
}

impl CountOrPercent {
    /// The absolute number this value allows out of `total`, rounding a percentage down.
    #[must_use]
    pub fn resolve_floor(self, total: u32) -> u32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (f64::from(total) * p / 100.0).floor() as u32,
        }
    }

    /// The absolute number this value allows out of `total`, rounding a percentage up.
    #[must_use]
    pub fn resolve_ceil(self, total: u32) -> u32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (f64::from(total) * p / 100.0).ceil() as u32,
        }
    }

    /// Parses the JSON forms: a non-negative integer, or a string holding one or a percentage.
    pub(crate) fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        match value {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Self::Count)
                .ok_or_else(|| {
                    format!("expected a whole number from 0 to {}, found {n}", u32::MAX)
                }),
            serde_json::Value::String(s) => s.parse(),
            other => Err(format!(
                "expected a number or a string such as \"20%\", found {}",
                describe_json(other)
            )),
        }
    }
}

impl FromStr for CountOrPercent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Some(number) = trimmed.strip_suffix('%') {
            let number = number.trim_end();
            match number.parse::<f64>() {
                Ok(p) if is_plain_decimal(number) && p.is_finite() => Ok(Self::Percent(p)),
                _ => Err(format!(
                    "expected a percentage such as \"20%\", found \"{s}\""
                )),
            }
        } else if is_plain_decimal(trimmed) && !trimmed.contains('.') {
            trimmed
                .parse::<u32>()
                .map(Self::Count)
                .map_err(|_| format!("a count must be at most {}, found \"{s}\"", u32::MAX))
        } else {
            Err(format!(
                "expected a whole number or a percentage such as \"20%\", found \"{s}\""
            ))
        }
    }
}

/// Digits with at most one inner decimal point: what the schema's pattern allows (no sign,
/// exponent or `inf`).
fn is_plain_decimal(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && parts.next().is_none_or(digits)
}

impl fmt::Display for CountOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for CountOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_u32(*n),
            Self::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for CountOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(de::Error::custom)
    }
}

impl JsonSchema for CountOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "CountOrPercent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A whole number (5 or \"5\") or a percentage of the total (\"20%\").",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*([0-9]+|[0-9]+(\\.[0-9]+)?\\s*%)\\s*$"}
            ],
            "x-eas-format": "count_or_percent"
        })
    }
}

/// A size in bytes, written as a number of bytes or a string such as `"20G"`, `"512Mi"`.
///
/// Decimal suffixes (`K`, `M`, `G`, `T`) and binary ones (`Ki`, `Mi`, `Gi`, `Ti`) are both
/// read as powers of 1024, the way EAS reads memory-cache capacities.
///
/// ```
/// use eas_core::spec::ByteSize;
///
/// assert_eq!("20G".parse::<ByteSize>().unwrap().bytes(), 20 << 30);
/// assert_eq!("512Mi".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// A size of `bytes` bytes.
    #[must_use]
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0
    }

    fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        match value {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Self)
                .ok_or_else(|| format!("expected a whole number of bytes, found {n}")),
            serde_json::Value::String(s) => s.parse(),
            other => Err(format!(
                "expected a size such as \"20G\" or a number of bytes, found {}",
                describe_json(other)
            )),
        }
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        let bad = || format!("expected a size such as \"20G\" or \"512Mi\", found \"{s}\"");
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = unit.trim();
        let shift = match unit.strip_suffix('B').unwrap_or(unit) {
            "" => 0,
            "K" | "k" | "Ki" => 10,
            "M" | "Mi" => 20,
            "G" | "Gi" => 30,
            "T" | "Ti" => 40,
            _ => return Err(bad()),
        };
        number
            .checked_mul(1 << shift)
            .map(Self)
            .ok_or_else(|| format!("size \"{s}\" is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u32, &str); 4] = [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")];
        for (shift, unit) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a string such as \"20G\" or \"512Mi\" (powers of 1024).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9]+\\s*(k|[KMGT]i?)?B?\\s*$"}
            ],
            "x-eas-format": "byte_size"
        })
    }
}

/// A cron expression, checked when the spec is read.
///
/// Five fields (`minute hour day-of-month month day-of-week`) or six with seconds first, as
/// Kubernetes CronHPA writes them. Names (`MON`, `JAN`), ranges, lists and steps are accepted.
///
/// ```
/// use eas_core::spec::CronExpr;
///
/// let weekdays: CronExpr = "0 8 * * MON-FRI".parse().unwrap();
/// assert_eq!(weekdays.as_str(), "0 8 * * MON-FRI");
/// assert!("0 25 * * *".parse::<CronExpr>().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    /// Parsed once, when the spec is read: policies ask for occurrences at every step.
    schedule: croner::Cron,
}

impl CronExpr {
    /// The expression as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed schedule, for computing occurrences.
    #[must_use]
    pub const fn schedule(&self) -> &croner::Cron {
        &self.schedule
    }
}

/// Two expressions are equal when they are written the same way.
impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day month weekday) or 6 with seconds first; \"{expression}\" has {fields}"
        ));
    }
    expression
        .parse::<croner::Cron>()
        .map_err(|e| format!("invalid cron expression \"{expression}\": {e}"))
}

impl FromStr for CronExpr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cron(s).map(|schedule| Self {
            text: s.trim().to_owned(),
            schedule,
        })
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An IANA time zone such as `Asia/Shanghai` or `UTC`.
///
/// ```
/// use eas_core::spec::TimeZone;
///
/// assert_eq!("Asia/Shanghai".parse::<TimeZone>().unwrap().name(), "Asia/Shanghai");
/// assert!("Mars/Olympus".parse::<TimeZone>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    /// Coordinated Universal Time, the default.
    pub const UTC: Self = Self(chrono_tz::Tz::UTC);

    /// The zone's IANA name.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The zone, for date arithmetic with `chrono`.
    #[must_use]
    pub const fn tz(self) -> chrono_tz::Tz {
        self.0
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self::UTC
    }
}

impl FromStr for TimeZone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            format!(
                "unknown time zone \"{s}\"; use an IANA name such as \"Asia/Shanghai\" or \"UTC\""
            )
        })
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Implements serde and schemars for a type that is written as a checked string.
macro_rules! string_value {
    ($ty:ty, $format:literal, $description:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "description": $description, "x-eas-format": $format})
            }
        }
    };
}

string_value!(
    CronExpr,
    "cron",
    "A cron expression: 5 fields (minute hour day month weekday) or 6 with seconds first."
);
string_value!(
    TimeZone,
    "timezone",
    "An IANA time zone name such as \"Asia/Shanghai\"."
);

/// Schema helper: a value of `T`, or `""` / `null` for "not set" (see [`empty_as_none`]).
pub(crate) struct EmptyOr<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for EmptyOr<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("EmptyOr{}", T::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inner = generator.subschema_for::<T>();
        json_schema!({
            "anyOf": [inner, {"type": "string", "const": ""}, {"type": "null"}]
        })
    }
}

/// Checks a value that the schema marks with `x-eas-format`, with the same parser that
/// deserialization uses, and explains what is wrong.
pub(crate) fn check_format(format: &str, value: &serde_json::Value) -> Result<(), String> {
    let text = || {
        value
            .as_str()
            .ok_or_else(|| format!("expected a string, found {}", describe_json(value)))
    };
    match format {
        "count_or_percent" => CountOrPercent::from_json(value).map(drop),
        "byte_size" => ByteSize::from_json(value).map(drop),
        "cron" => text()?.parse::<CronExpr>().map(drop),
        "timezone" => text()?.parse::<TimeZone>().map(drop),
        "sinker_type" => text()?.parse::<super::SinkerType>().map(drop),
        _ => Ok(()),
    }
}

/// Describes a JSON value for an error message: its kind, and the value when it is short.
pub(crate) fn describe_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) if n.is_f64() => format!("a number ({n})"),
        Value::Number(n) => format!("an integer ({n})"),
        Value::String(s) if s.chars().count() <= 40 => format!("a string (\"{s}\")"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// Serde helpers for durations written as whole milliseconds or seconds.
pub(crate) mod duration {
    /// A duration written as whole milliseconds.
    pub(crate) mod millis {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_millis)
        }
    }

    /// A duration written as whole seconds.
    pub(crate) mod secs {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(d.as_secs())
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_secs)
        }
    }
}

/// Serde helper: an optional string where `""` means "not set", as the EAS reference writes
/// unused fields (`"model_entry": ""`).
pub(crate) mod empty_as_none {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_or_percent_should_read_numbers_numeric_strings_and_percentages() {
        use serde_json::json;
        assert_eq!(
            CountOrPercent::from_json(&json!(800)),
            Ok(CountOrPercent::Count(800))
        );
        assert_eq!(
            CountOrPercent::from_json(&json!("500")),
            Ok(CountOrPercent::Count(500))
        );
        assert_eq!(
            CountOrPercent::from_json(&json!("20%")),
            Ok(CountOrPercent::Percent(20.0))
        );
        assert!(CountOrPercent::from_json(&json!("twenty")).is_err());
        assert!(CountOrPercent::from_json(&json!(-1)).is_err());
        assert!(CountOrPercent::from_json(&json!(true)).is_err());
    }

    #[test]
    fn percent_should_resolve_against_a_total() {
        assert_eq!(CountOrPercent::Percent(20.0).resolve_floor(200), 40);
        assert_eq!(CountOrPercent::Percent(2.0).resolve_ceil(10), 1);
        assert_eq!(CountOrPercent::Percent(2.0).resolve_floor(10), 0);
        assert_eq!(CountOrPercent::Count(3).resolve_ceil(10), 3);
    }

    #[test]
    fn byte_size_should_round_trip_through_its_display_form() {
        for text in ["20Gi", "512Mi", "1", "3Ki"] {
            let size: ByteSize = text.parse().unwrap();
            assert_eq!(size.to_string().parse::<ByteSize>().unwrap(), size);
        }
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999T".parse::<ByteSize>().is_err());
    }

    #[test]
    fn cron_should_accept_five_or_six_fields_and_refuse_bad_ones() {
        assert!("*/5 * * * *".parse::<CronExpr>().is_ok());
        assert!("0 0 8 * * MON-FRI".parse::<CronExpr>().is_ok());
        assert!("* * * *".parse::<CronExpr>().is_err());
        assert!("61 * * * *".parse::<CronExpr>().is_err());
        assert!("0 8 * * NOTADAY".parse::<CronExpr>().is_err());
    }
}
