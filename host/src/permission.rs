//! DRF's permission classes.

use std::fmt;
use std::str::FromStr;

/// Who may use a route, once authentication has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `AllowAny`
    AllowAny,
    /// `IsAuthenticated`
    IsAuthenticated,
    /// `IsAdminUser`: authenticated staff.
    IsAdmin,
    /// `IsAuthenticatedOrReadOnly`: GET, HEAD and OPTIONS for everyone.
    IsAuthenticatedOrReadOnly,
}

/// What permission checks look at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub authenticated: bool,
    pub is_staff: bool,
    pub method: &'a str,
}

impl Permission {
    pub const NAMES: [&'static str; 4] =
        ["allow_any", "is_authenticated", "is_admin", "is_authenticated_or_read_only"];

    pub fn allows(self, subject: Subject<'_>) -> bool {
        match self {
            Permission::AllowAny => true,
            Permission::IsAuthenticated => subject.authenticated,
            Permission::IsAdmin => subject.authenticated && subject.is_staff,
            Permission::IsAuthenticatedOrReadOnly => {
                subject.authenticated || matches!(subject.method, "GET" | "HEAD" | "OPTIONS")
            }
        }
    }
}

impl FromStr for Permission {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "allow_any" => Ok(Permission::AllowAny),
            "is_authenticated" => Ok(Permission::IsAuthenticated),
            "is_admin" => Ok(Permission::IsAdmin),
            "is_authenticated_or_read_only" => Ok(Permission::IsAuthenticatedOrReadOnly),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = *self as usize;
        f.pad(Permission::NAMES[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(authenticated: bool, is_staff: bool, method: &str) -> Subject<'_> {
        Subject { authenticated, is_staff, method }
    }

    #[test]
    fn each_permission_matches_drf() {
        use Permission::*;
        assert!(AllowAny.allows(subject(false, false, "POST")));
        assert!(!IsAuthenticated.allows(subject(false, false, "GET")));
        assert!(IsAuthenticated.allows(subject(true, false, "DELETE")));
        assert!(!IsAdmin.allows(subject(true, false, "GET")));
        assert!(IsAdmin.allows(subject(true, true, "GET")));
        assert!(IsAuthenticatedOrReadOnly.allows(subject(false, false, "HEAD")));
        assert!(!IsAuthenticatedOrReadOnly.allows(subject(false, false, "POST")));
    }

    #[test]
    fn names_round_trip() {
        for name in Permission::NAMES {
            assert_eq!(name.parse::<Permission>().unwrap().to_string(), name);
        }
    }
}
