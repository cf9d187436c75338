//! The key rule that clients and catalogs rely on.

/// Derives a stable key from a display name: lower-cased, every run of characters other than
/// `a-z0-9` replaced by one `_`, leading and trailing `_` removed.
///
/// `"Export customers"` → `export_customers`;
/// `"View and edit “MMS and messengers” messages"` → `view_and_edit_mms_and_messengers_messages`.
pub fn key_from_name(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let mut pending_sep = false;
    for ch in name.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            if pending_sep && !key.is_empty() {
                key.push('_');
            }
            pending_sep = false;
            key.push(ch);
        } else {
            pending_sep = true;
        }
    }
    key
}

/// True when `key` is already in the form [`key_from_name`] produces.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key_from_name(key) == key
}

/// The candidate closest to `word` when it is close enough to be a likely misspelling (a few
/// edits, transpositions counted as one), for "did you mean" hints. Ties go to the first.
/// Words under three characters get no hint: every short key is a few edits from every other.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=2 => return None,
        n => (n / 4).clamp(1, 3),
    };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic-programming table: two back, one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_likely_misspellings() {
        let flags = ["multibrand", "secrets", "static_ips", "with_segment"];
        assert_eq!(closest("multibrnad", flags), Some("multibrand"));
        assert_eq!(closest("multibrand_", flags), Some("multibrand"));
        assert_eq!(closest("secret", flags), Some("secrets"));
        assert_eq!(closest("anything", flags), None);
        assert_eq!(
            closest("multibrand", flags),
            None,
            "an exact match is no hint"
        );
        assert_eq!(closest("b", ["a", "bc"]), None, "too short to guess");
        assert_eq!(
            closest("abd", ["abc", "abe"]),
            Some("abc"),
            "the first of a tie"
        );
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    fn check(name: &str, expected: &str) {
        assert_eq!(key_from_name(name), expected, "key of {name:?}");
    }

    #[test]
    fn key_rule() {
        check("Export customers", "export_customers");
        check(
            "View and edit “MMS and messengers” messages",
            "view_and_edit_mms_and_messengers_messages",
        );
        check(
            "View and edit \"MMS and messengers\" messages",
            "view_and_edit_mms_and_messengers_messages",
        );
        check(
            "Create, edit and delete blocks in the email constructor",
            "create_edit_and_delete_blocks_in_the_email_constructor",
        );
        check(
            "Set order status to “received”",
            "set_order_status_to_received",
        );
        check(
            "View message template variables (tab)",
            "view_message_template_variables_tab",
        );
        check(
            "Manage security policy: partial access",
            "manage_security_policy_partial_access",
        );
        check("View A/B tests", "view_a_b_tests");
        check("Edit product-based flows", "edit_product_based_flows");
        check("Layout of email templates", "layout_of_email_templates");
        check("API", "api");
        check("  __Trim me__  ", "trim_me");
        check("", "");
        check("“”", "");
    }

    #[test]
    fn valid_keys() {
        assert!(is_valid_key("export_customers"));
        assert!(is_valid_key("a1"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("Export"));
        assert!(!is_valid_key("_x"));
        assert!(!is_valid_key("x__y"));
        assert!(!is_valid_key("x-y"));
    }
}
