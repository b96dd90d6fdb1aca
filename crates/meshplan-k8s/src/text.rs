//! Text echoed in messages: a value quoted in an error is clipped so that a 1 MB value does not
//! make a 1 MB message.

use std::borrow::Cow;

/// How many characters of an echoed value a message keeps by default.
pub const ECHO_LIMIT: usize = 200;

/// How many characters of a message from a server or a tool (an API server's Status message,
/// helm's stderr), which may quote values of any size, are kept.
pub const MESSAGE_LIMIT: usize = 2000;

/// [`clip`] to [`MESSAGE_LIMIT`], owned: for a message from a server or a tool.
pub fn clip_message(text: &str) -> String {
    clip(text, MESSAGE_LIMIT).into_owned()
}

/// `text` if it has at most `max` characters; else its first `max` characters (never splitting
/// one) followed by `... (N more bytes)`.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!(
            "{}... ({} more bytes)",
            &text[..cut],
            text.len() - cut
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_long_text_is_clipped_on_a_char_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 3), "abc... (3 more bytes)");
        // Multi-byte characters are counted as characters, and never split.
        assert_eq!(clip("ééééé", 2), "éé... (6 more bytes)");
        let big = "x".repeat(1_000_000);
        assert!(clip(&big, ECHO_LIMIT).len() < 300);
    }
}
