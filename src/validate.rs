//! Validation of identifiers and sizes, with messages that say what to fix.

use crate::error::{Error, Result};
use authz_core::key::{is_valid_key, key_from_name};

/// Longest tenant, user or resource id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest group key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest name, description or email accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Most ids, permissions or resources in one request list.
pub const MAX_LIST_LEN: usize = 10_000;
/// Largest page of a listing.
pub const MAX_PAGE_SIZE: usize = 1000;
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// An opaque identifier (tenant, user, resource): non-empty, bounded, printable.
pub fn id(field: &str, value: &str) -> Result<()> {
    // The common case, checked in one pass: printable ASCII, no space at either end.
    let bytes = value.as_bytes();
    if bytes.len() <= MAX_ID_LEN
        && bytes.first().is_some_and(|b| *b != b' ')
        && bytes.last().is_some_and(|b| *b != b' ')
        && bytes.iter().all(|b| (b' '..=b'~').contains(b))
    {
        return Ok(());
    }
    id_checked(field, value)
}

/// [`id`] without its ASCII fast path: every rule, one at a time.
fn id_checked(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::Invalid(format!("{field} is required")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::Invalid(format!(
            "{field} is {} bytes long; the limit is {MAX_ID_LEN}",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::Invalid(format!(
            "{field} {value:?} contains the control character {c:?}; ids must be printable"
        )));
    }
    if let Some(c) = value.chars().find(|c| invisible(*c)) {
        return Err(Error::Invalid(format!(
            "{field} {value:?} contains the invisible character U+{:04X}; ids must be printable (two ids that look the same must be the same id)",
            u32::from(c)
        )));
    }
    if value.trim() != value {
        return Err(Error::Invalid(format!(
            "{field} {value:?} has leading or trailing whitespace; remove it"
        )));
    }
    Ok(())
}

/// Characters that print as nothing or reorder what is printed around them: zero-width
/// spaces and joiners, direction marks, embeddings, overrides and isolates, the byte order
/// mark, the soft hyphen, the combining grapheme joiner, variation selectors, tag characters,
/// Hangul fillers, the blank Braille pattern, deprecated format characters, invisible musical
/// formatting, and noncharacters.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FDD0}'..='\u{FDEF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || (u32::from(c) & 0xFFFE) == 0xFFFE
}

/// Every id in a list, which must not be empty or too long.
pub fn ids(field: &str, values: &[String]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::Invalid(format!("{field} must name at least one id")));
    }
    list_len(field, values.len())?;
    for v in values {
        id(field, v)?;
    }
    Ok(())
}

pub fn list_len(field: &str, len: usize) -> Result<()> {
    if len > MAX_LIST_LEN {
        return Err(Error::Invalid(format!(
            "{field} has {len} entries; the limit is {MAX_LIST_LEN} per request"
        )));
    }
    Ok(())
}

/// A group key: the key rule's form, bounded.
pub fn group_key(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::Invalid(format!("{field} is required")));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(Error::Invalid(format!(
            "{field} is {} bytes long; the limit is {MAX_KEY_LEN}",
            value.len()
        )));
    }
    if !is_valid_key(value) {
        let suggestion = key_from_name(value);
        let hint = if suggestion.is_empty() {
            String::new()
        } else {
            format!(" (try `{suggestion}`)")
        };
        return Err(Error::Invalid(format!(
            "{field} {value:?} is not a valid key: use a-z, 0-9 and single `_` between words{hint}"
        )));
    }
    Ok(())
}

/// Free text (names, descriptions, email): bounded, no control characters but newlines/tabs.
pub fn text(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT_LEN {
        return Err(Error::Invalid(format!(
            "{field} is {} bytes long; the limit is {MAX_TEXT_LEN}",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(Error::Invalid(format!(
            "{field} contains the control character {c:?}"
        )));
    }
    Ok(())
}

/// A page size: 0 means the default; more than the maximum is an error.
pub fn page_size(value: i32) -> Result<usize> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(Error::Invalid(format!("page_size {n} is negative"))),
        n => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_PAGE_SIZE {
                Err(Error::Invalid(format!(
                    "page_size {n} is over the limit of {MAX_PAGE_SIZE}"
                )))
            } else {
                Ok(n)
            }
        }
    }
}

/// A revision token exactly as the server writes one: decimal digits only, without sign,
/// spaces or leading zeros. Anything else (`"+5"`, `" 5"`, `"05"`) is not a token.
pub fn revision_token(token: &str) -> Option<crate::store::Revision> {
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if canonical { token.parse().ok() } else { None }
}

const TOKEN_PREFIX: &str = "after:";

/// Page tokens carry the last key returned.
pub fn page_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    match token.strip_prefix(TOKEN_PREFIX) {
        Some(k) if !k.is_empty() => Ok(Some(k.to_owned())),
        _ => Err(Error::Invalid(format!(
            "page_token {token:?} is not one this server issued; pass next_page_token from the previous response"
        ))),
    }
}

pub fn next_page_token(last_key: Option<&str>, more: bool) -> String {
    match last_key {
        Some(k) if more => format!("{TOKEN_PREFIX}{k}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(id("user_id", "u-1@example.com").is_ok());
        assert!(
            id("user_id", "")
                .unwrap_err()
                .to_string()
                .contains("user_id is required")
        );
        assert!(
            id("user_id", "a\u{0}b")
                .unwrap_err()
                .to_string()
                .contains("control character")
        );
        assert!(
            id("user_id", " a")
                .unwrap_err()
                .to_string()
                .contains("whitespace")
        );
        assert!(
            id("user_id", &"x".repeat(257))
                .unwrap_err()
                .to_string()
                .contains("limit is 256")
        );
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_every_rule() {
        for b in 0..=0x7fu8 {
            let c = char::from(b);
            for value in [
                format!("{c}"),
                format!("a{c}"),
                format!("{c}a"),
                format!("a{c}b"),
            ] {
                assert_eq!(
                    id("user_id", &value).is_ok(),
                    id_checked("user_id", &value).is_ok(),
                    "{value:?}"
                );
            }
        }
        for value in [
            "x".repeat(256),
            "x".repeat(257),
            "é".into(),
            "a\u{200B}b".into(),
        ] {
            assert_eq!(
                id("user_id", &value).is_ok(),
                id_checked("user_id", &value).is_ok(),
                "{value:?}"
            );
        }
        assert!(id("user_id", "a\u{7f}").is_err());
        assert!(id("user_id", "a\u{200B}b").is_err());
    }

    #[test]
    fn ids_refuse_characters_that_print_as_nothing() {
        for c in [
            '\u{034F}',
            '\u{115F}',
            '\u{1160}',
            '\u{17B4}',
            '\u{17B5}',
            '\u{180B}',
            '\u{206A}',
            '\u{206F}',
            '\u{2800}',
            '\u{3164}',
            '\u{FDD0}',
            '\u{FE00}',
            '\u{FE0F}',
            '\u{FFA0}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{1FFFE}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
            '\u{E0100}',
        ] {
            let value = format!("alice{c}");
            let e = id("user_id", &value).unwrap_err().to_string();
            assert!(e.contains("invisible character"), "{value:?}: {e}");
        }
        for ok in ["café", "Ünïcödé", "用户", "ålice-ø"] {
            assert!(id("user_id", ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn group_keys_suggest_the_key_rule() {
        assert!(group_key("group.key", "email_specialist").is_ok());
        let e = group_key("group.key", "Email Specialist")
            .unwrap_err()
            .to_string();
        assert!(e.contains("try `email_specialist`"), "{e}");
    }

    #[test]
    fn revision_tokens_are_parsed_strictly() {
        assert_eq!(revision_token("0"), Some(0));
        assert_eq!(revision_token("42"), Some(42));
        assert_eq!(revision_token("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+5",
            "-5",
            " 5",
            "5 ",
            "05",
            "5\n",
            "0x5",
            "5.0",
            "1e3",
            "٣",
            "18446744073709551616",
        ] {
            assert_eq!(revision_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pages() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(page_size(-1).is_err());
        assert!(page_size(1001).is_err());
        assert_eq!(page_token("").unwrap(), None);
        assert_eq!(
            page_token(&next_page_token(Some("k"), true))
                .unwrap()
                .as_deref(),
            Some("k")
        );
        assert_eq!(next_page_token(Some("k"), false), "");
        assert!(page_token("garbage").is_err());
    }
}
