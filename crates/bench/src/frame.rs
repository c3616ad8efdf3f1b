//! Reading what the bench needs from an event frame without parsing it: at saturation one
//! bench core reads hundreds of thousands of frames a second, and a full JSON parse per frame
//! would make the bench, not the server, the bottleneck.

use memchr::memmem::Finder;
use std::sync::LazyLock;

/// The fields of an `event` frame the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView {
    /// The event's offset in its room.
    pub offset: i64,
    /// What the publisher put in the title.
    pub mark: Mark,
}

/// The bench's mark in a task title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `bench <unix nanos>`: a timed event.
    Sent(u128),
    /// `bench-end`: the publisher is done with this room.
    End,
    /// Anything else.
    Other,
}

/// Title of a timed event.
pub fn sent_title(unix_nanos: u128) -> String {
    format!("bench {unix_nanos}")
}

/// Title of the end marker.
pub const END_TITLE: &str = "bench-end";

/// The searches `view` makes in every frame, built once: building a finder costs more than a
/// search through one event.
static OFFSET: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""offset":"#));
static TITLE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""title":"bench"#));

/// Looks at a text frame: `None` unless it is an `event` frame with an offset.
pub fn view(bytes: &[u8]) -> Option<EventView> {
    if !bytes.starts_with(br#"{"type":"event""#) {
        return None;
    }
    let offset = number_after(bytes, &OFFSET)? as i64;
    let mark = match TITLE.find(bytes) {
        None => Mark::Other,
        Some(at) => {
            let rest = &bytes[at + br#""title":"bench"#.len()..];
            match rest.first() {
                Some(b' ') => number_at(&rest[1..]).map_or(Mark::Other, Mark::Sent),
                Some(b'-') if rest.starts_with(b"-end\"") => Mark::End,
                _ => Mark::Other,
            }
        }
    };
    Some(EventView { offset, mark })
}

fn number_after(bytes: &[u8], key: &Finder<'static>) -> Option<u128> {
    let at = key.find(bytes)?;
    number_at(&bytes[at + key.needle().len()..])
}

fn number_at(bytes: &[u8]) -> Option<u128> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 38 {
        return None;
    }
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offset_and_mark() {
        let f = r#"{"type":"event","room":"project:p","offset":42,"event":"task.created","data":{"id":"x","title":"bench 1700000000123456789","priority":0},"at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(
            view(f.as_bytes()),
            Some(EventView {
                offset: 42,
                mark: Mark::Sent(1_700_000_000_123_456_789)
            })
        );
        let end = r#"{"type":"event","room":"project:p","offset":43,"event":"task.created","data":{"title":"bench-end"}}"#;
        assert_eq!(view(end.as_bytes()).unwrap().mark, Mark::End);
        let other = r#"{"type":"event","room":"project:p","offset":44,"event":"task.created","data":{"title":"hello"}}"#;
        assert_eq!(view(other.as_bytes()).unwrap().mark, Mark::Other);
        assert_eq!(view(br#"{"type":"pong"}"#), None);
    }

    #[test]
    fn the_titles_it_writes_are_the_ones_it_reads() {
        let f = format!(
            r#"{{"type":"event","offset":1,"data":{{"title":"{}"}}}}"#,
            sent_title(99)
        );
        assert_eq!(view(f.as_bytes()).unwrap().mark, Mark::Sent(99));
    }
}
