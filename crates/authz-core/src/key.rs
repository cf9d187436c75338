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

#[cfg(test)]
mod tests {
    use super::*;

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
