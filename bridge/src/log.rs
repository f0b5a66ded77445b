//! The bridge's log lines on stderr, in the two formats of `genesys-tail`: readable
//! (`<time> <channel or -> <message>`) or one JSON object per line (`time`, `event`,
//! `channel`, `message`, and details). It never panics on a closed stderr.

use genesys_notify::Lifecycle;
use std::io::Write;

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `<RFC 3339 time> <channel or -> <message>`.
    Text,
    /// `{"time":…,"event":…,"channel":…,"message":…, details}`.
    Json,
}

/// Writes log lines on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Log {
    format: Format,
}

impl Log {
    /// A log in `format`.
    pub fn new(format: Format) -> Log {
        Log { format }
    }

    /// One of the bridge's own events (`acquired`, `released`, `lost`, `fenced`, `gap`,
    /// `redis_unavailable`, `redis_available`, `stopped`, ...), with details for JSON.
    pub fn note(&self, event: &str, message: &str, fields: &[(&str, serde_json::Value)]) {
        let line = self.line(event, None, message, fields);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// A lifecycle event of the library client of credential `credential` (its index in the
    /// pool, 0 in the one-command form), as `genesys-tail` writes it, plus `credential`.
    pub fn lifecycle(&self, credential: usize, event: &Lifecycle) {
        let mut fields: Vec<(&str, serde_json::Value)> = vec![("credential", credential.into())];
        match event {
            Lifecycle::Gap {
                start, end, topics, ..
            } => {
                fields.push(("start", time(*start).into()));
                fields.push(("end", time(*end).into()));
                fields.push((
                    "topics",
                    topics.iter().map(|t| t.as_str()).collect::<Vec<_>>().into(),
                ));
            }
            Lifecycle::Reconnecting { attempt, delay, .. } => {
                fields.push(("attempt", (*attempt).into()));
                fields.push(("delay_ms", (delay.as_millis() as u64).into()));
            }
            Lifecycle::Dropped { count, total, .. } => {
                fields.push(("count", (*count).into()));
                fields.push(("total", (*total).into()));
            }
            _ => {}
        }
        let channel = event.channel().map(|c| c.to_string());
        let line = self.line(
            event.name(),
            channel.as_deref(),
            &event.to_string(),
            &fields,
        );
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// The line for an event (without the newline).
    pub fn line(
        &self,
        event: &str,
        channel: Option<&str>,
        message: &str,
        fields: &[(&str, serde_json::Value)],
    ) -> String {
        let now = time(std::time::SystemTime::now());
        match self.format {
            Format::Text => format!("{now} {} {}", channel.unwrap_or("-"), one_line(message)),
            Format::Json => {
                let mut line = serde_json::json!({
                    "time": now,
                    "event": event,
                    "channel": channel,
                    "message": message,
                });
                for (key, value) in fields {
                    line[*key] = value.clone();
                }
                line.to_string()
            }
        }
    }
}

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `text` with its control characters escaped: one line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_tail_fields_and_details() {
        let line = Log::new(Format::Json).line("acquired", None, "shard 3", &[("shard", 3.into())]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "acquired");
        assert_eq!(v["channel"], serde_json::Value::Null);
        assert_eq!(v["message"], "shard 3");
        assert_eq!(v["shard"], 3);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_are_one_line() {
        let line = Log::new(Format::Text).line("x", Some("chan…abcd"), "a\nb", &[]);
        assert!(!line.contains('\n'));
        assert!(line.ends_with(" chan…abcd a\\nb"), "{line}");
    }
}
