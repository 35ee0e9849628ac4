//! Django's `normalize_username`: NFKC, applied wherever a username comes in (creation,
//! look-up, logins by username), so that `ａｌｉｃｅ` (fullwidth) is `alice`, never a
//! lookalike of her.

use std::borrow::Cow;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// `name` in NFKC; borrowed when it already is (every ASCII name).
pub fn normalize(name: &str) -> Cow<'_, str> {
    if is_nfkc_quick(name.chars()) == IsNormalized::Yes {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfkc().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_become_the_name_they_look_like() {
        assert_eq!(normalize("ａｌｉｃｅ"), "alice");
        assert_eq!(normalize("ﬁona"), "fiona");
        assert!(matches!(normalize("alice"), Cow::Borrowed("alice")));
        assert_eq!(normalize("zoë"), "zoë");
    }
}
