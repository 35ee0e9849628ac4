//! DRF's `obtain_auth_token`: POST `username` and `password` (form or JSON), get
//! `{"token": "<key>"}`, the user's existing key or a new one; DRF's 400 shapes otherwise.

use authhost_plugin_api::{LoginField, User};

use crate::config::TokenField;
use serde_json::{json, Map, Value};

/// What a valid request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub field: LoginField,
    /// The username, or the e-mail address when `field` says so.
    pub login: String,
    pub password: String,
}

/// DRF's `AuthTokenSerializer` field checks, with the login in the field named `field`
/// (`username`, or `email` for a login by e-mail). `Err` is the 400 body.
pub fn validate(data: &Value, field: LoginField) -> Result<Credentials, Value> {
    // The login is trimmed; the password never is.
    let mut values = char_fields(data, &[(field.as_str(), true), ("password", false)])?.into_iter();
    match (values.next(), values.next()) {
        (Some(login), Some(password)) => Ok(Credentials { field, login, password }),
        _ => Err(json!({
            "non_field_errors": [format!("Must include \"{}\" and \"password\".", field.as_str())]
        })),
    }
}

/// A serializer of `CharField`s (name, trimmed): their values in order, or DRF's 400 body
/// with every field's errors.
pub fn char_fields(data: &Value, names: &[(&str, bool)]) -> Result<Vec<String>, Value> {
    let fields = match data {
        Value::Object(fields) => fields,
        // The serializer's own edge case: "no data" reads better than "may not be null".
        Value::Null => return Err(json!({ "non_field_errors": ["No data provided"] })),
        other => {
            let datatype = python_type(other);
            return Err(json!({
                "non_field_errors": [format!("Invalid data. Expected a dictionary, but got {datatype}.")]
            }));
        }
    };
    let mut errors = Map::new();
    let values: Vec<Option<String>> =
        names.iter().map(|(name, trim)| char_field(fields, name, *trim, &mut errors)).collect();
    if errors.is_empty() {
        Ok(values.into_iter().flatten().collect())
    } else {
        Err(Value::Object(errors))
    }
}

/// The 200 body: `{"token": key}` (DRF), or the fields a custom `ObtainAuthToken` adds,
/// in the order configured (`{"token", "user_id", "email"}`, say), as DRF's dict keeps it.
pub fn answer(fields: &[TokenField], key: &str, user: &User) -> InOrder {
    InOrder(
        fields
            .iter()
            .map(|field| {
                let value = match field {
                    TokenField::Token => json!(key),
                    TokenField::UserId => json!(user.id),
                    TokenField::Username => json!(user.username.as_str()),
                    TokenField::Email => json!(user.email.as_str()),
                    TokenField::IsStaff => json!(user.is_staff),
                };
                (field.name(), value)
            })
            .collect(),
    )
}

/// A JSON object whose keys keep their order (`serde_json::Map` sorts them).
#[derive(Debug)]
pub struct InOrder(Vec<(&'static str, Value)>);

impl serde::Serialize for InOrder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The 400 body for credentials that do not authenticate an active user.
pub fn bad_credentials() -> Value {
    json!({ "non_field_errors": ["Unable to log in with provided credentials."] })
}

/// DRF's `CharField`: required, not null, not blank; numbers are taken as their text.
fn char_field(
    fields: &Map<String, Value>,
    name: &str,
    trim: bool,
    errors: &mut Map<String, Value>,
) -> Option<String> {
    let fail = |errors: &mut Map<String, Value>, message: &str| {
        errors.insert(name.to_owned(), json!([message]));
        None
    };
    let text = match fields.get(name) {
        None => return fail(errors, "This field is required."),
        Some(Value::Null) => return fail(errors, "This field may not be null."),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return fail(errors, "Not a valid string."),
    };
    // Python's str.strip(), whose whitespace also holds U+001C..U+001F (Rust's does not).
    let text = if trim { text.trim_matches(is_python_space).to_owned() } else { text };
    if text.is_empty() {
        return fail(errors, "This field may not be blank.");
    }
    // DRF's ProhibitNullCharactersValidator.
    if text.contains('\0') {
        return fail(errors, "Null characters are not allowed.");
    }
    Some(text)
}

/// Python's `str.isspace()`: Unicode's White_Space and the four ASCII separators.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's name for a JSON value's type, as DRF's message shows it.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drf_field_errors() {
        assert_eq!(
            validate(&json!({}), LoginField::Username).unwrap_err(),
            json!({"username": ["This field is required."], "password": ["This field is required."]})
        );
        assert_eq!(
            validate(&json!({"username": "  ", "password": null}), LoginField::Username).unwrap_err(),
            json!({"username": ["This field may not be blank."], "password": ["This field may not be null."]})
        );
        assert_eq!(
            validate(&json!({"username": ["a"], "password": true}), LoginField::Username).unwrap_err(),
            json!({"username": ["Not a valid string."], "password": ["Not a valid string."]})
        );
        assert_eq!(
            validate(&json!([1]), LoginField::Username).unwrap_err(),
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
        );
        assert_eq!(
            validate(&Value::Null, LoginField::Username).unwrap_err(),
            json!({"non_field_errors": ["No data provided"]})
        );
        assert_eq!(
            validate(&json!({"username": "alice"}), LoginField::Email).unwrap_err(),
            json!({"email": ["This field is required."], "password": ["This field is required."]})
        );
    }

    #[test]
    fn username_is_trimmed_and_password_is_not() {
        let ok = validate(&json!({"username": " alice ", "password": " pw "}), LoginField::Username).unwrap();
        assert_eq!(
            ok,
            Credentials { field: LoginField::Username, login: "alice".into(), password: " pw ".into() }
        );
        let numeric = validate(&json!({"username": 42, "password": 7}), LoginField::Username).unwrap();
        assert_eq!(
            numeric,
            Credentials { field: LoginField::Username, login: "42".into(), password: "7".into() }
        );
    }
}
