//! Identifiers and requests as types, validated once at the edge ([`crate::grpc`], the catalog
//! test runner) and then passed on: the application never validates an id it was handed.
//!
//! A [`TenantId`] or [`UserId`] is an opaque id (non-empty, bounded, printable, no surrounding
//! whitespace), a [`GroupKey`] follows the key rule. [`By`] says who makes an admin call: an
//! operator or an acting staff user, never an empty string. [`Paging`] is one page of a listing.

use crate::error::Result;
use crate::store::PageRequest;
use crate::validate;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value`, sent as `field`; the error says what to fix.
            pub fn parse(field: &str, value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                $check(field, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant's id.
    TenantId,
    validate::id
);
id_type!(
    /// A staff user's id within a tenant.
    UserId,
    validate::id
);
id_type!(
    /// A group's key (system or custom), in the key rule's form.
    GroupKey,
    validate::group_key
);

/// A list of user ids, each valid: at least one, at most the list limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIds(Vec<String>);

impl UserIds {
    pub fn parse(field: &str, values: Vec<String>) -> Result<Self> {
        validate::ids(field, &values)?;
        Ok(Self(values))
    }
}

impl std::ops::Deref for UserIds {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

/// Who makes an admin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum By {
    /// An operator: the rules of the catalog's `[admin]` table do not apply.
    Operator,
    /// A staff user acting through an admin tool; every admin rule applies to it.
    Actor(UserId),
}

impl By {
    /// The wire's convention: an empty `actor_user_id` is an operator.
    pub fn parse(field: &str, actor_user_id: impl Into<String>) -> Result<Self> {
        let actor = actor_user_id.into();
        if actor.is_empty() {
            return Ok(By::Operator);
        }
        Ok(By::Actor(UserId::parse(field, actor)?))
    }

    /// The acting user, if any.
    pub fn actor(&self) -> Option<&UserId> {
        match self {
            By::Operator => None,
            By::Actor(id) => Some(id),
        }
    }

    pub fn is_actor(&self) -> bool {
        matches!(self, By::Actor(_))
    }
}

/// One page of a listing, as asked: its size and where it continues.
#[derive(Clone, Debug)]
pub struct Paging(pub(crate) PageRequest);

/// The first page, of the default size.
impl Default for Paging {
    fn default() -> Self {
        Paging::first(validate::DEFAULT_PAGE_SIZE)
    }
}

impl Paging {
    /// The wire's `page_size` (0: the default) and `page_token` (empty: the first page).
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self> {
        Ok(Paging(PageRequest {
            size: validate::page_size(page_size)?,
            after: validate::page_token(page_token)?,
        }))
    }

    /// The first page of `size` items.
    pub fn first(size: usize) -> Self {
        Paging(PageRequest { size, after: None })
    }

    pub fn size(&self) -> usize {
        self.0.size
    }

    /// The token's key, which items of the page come strictly after.
    pub fn after(&self) -> Option<&str> {
        self.0.after.as_deref()
    }
}
