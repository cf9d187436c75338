//! Every response leaves through [`respond`], which tells the request log the revision the
//! answer carries. [`Answer`] says, per response type, which revision that is: a type that
//! is not listed here does not compile as a response.

use super::pb;
use tonic::{Response, Status};

/// A response message and the revision it was answered at (if it carries one).
pub trait Answer {
    fn revision(&self) -> Option<&str>;
}

macro_rules! answers {
    (revision: $($with:ident),* ; tenant: $($tenant:ident),* ; none: $($without:ident),* $(,)?) => {
        $(impl Answer for pb::$with {
            fn revision(&self) -> Option<&str> {
                Some(&self.revision)
            }
        })*
        $(impl Answer for pb::$tenant {
            fn revision(&self) -> Option<&str> {
                self.tenant.as_ref().map(|t| t.revision.as_str())
            }
        })*
        $(impl Answer for pb::$without {
            fn revision(&self) -> Option<&str> {
                None
            }
        })*
    };
}

answers!(
    revision: CheckResponse, BatchCheckResponse, GetEffectivePermissionsResponse,
        ListAllowedResourcesResponse, CreateTenantResponse, UpsertUserResponse,
        ImportUsersResponse, SetUserStatusResponse, CreateGroupResponse, UpdateGroupResponse,
        DeleteGroupResponse, DuplicateGroupResponse, AddGroupMembersResponse,
        RemoveGroupMembersResponse, GrantPermissionsResponse, RevokePermissionsResponse,
        SetRestrictionsResponse;
    tenant: GetTenantResponse;
    none: ListTenantsResponse, GetUserResponse, ListUsersResponse, GetGroupResponse,
        ListGroupsResponse, ListAuditEventsResponse, GetCatalogResponse, ListPermissionsResponse,
        ListActionsResponse,
);

/// The response, its revision noted for the request's log line.
pub fn respond<T: Answer>(message: T) -> Result<Response<T>, Status> {
    if let Some(revision) = message.revision() {
        crate::telemetry::answered_at(revision);
    }
    Ok(Response::new(message))
}
