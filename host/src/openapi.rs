//! An OpenAPI 3.1 document of the configured routes (`handler = "openapi"`): each
//! built-in handler's request and response bodies with DRF's error shapes, each route's
//! security from its chain (any one scheme of the chain may authenticate; `{}` where the
//! permission lets anonymous requests through), proxied routes as opaque operations. It
//! is built once per config (and per reload), from the config alone.

use serde_json::{json, Map, Value};

use crate::config::{Config, Handler, RouteConfig, SchemeConfig, TokenField};
use crate::permission::Permission;

/// The document for `config`, as JSON.
pub fn document(config: &Config) -> Value {
    let mut paths = Map::new();
    for route in &config.routes {
        let mut operations = operations(config, route);
        let security = security(config, route);
        for (_, operation) in operations.iter_mut() {
            let operation = operation.as_object_mut().expect("operations are objects");
            operation.insert("security".into(), security.clone());
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            add_refusals(responses, config, route);
        }
        let mut item = Map::new();
        if route.prefix {
            item.insert(
                "description".into(),
                json!(format!(
                    "A prefix route: also every path under {}/ (same operations).",
                    route.path.trim_end_matches('/')
                )),
            );
        }
        item.extend(operations);
        paths.insert(route.path.clone(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "authhost",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The routes this authhost serves, with Django REST Framework's authentication, permission and throttling answers.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": security_schemes(config),
            "schemas": schemas(),
        },
    })
}

/// What a scheme's plugin is, from its library's file name (`libauthhost_token.so`).
fn plugin_kind(scheme: &SchemeConfig) -> &str {
    let stem = scheme.library.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem.trim_start_matches("lib").trim_start_matches("authhost_")
}

fn option<'a>(scheme: &'a SchemeConfig, key: &str) -> Option<&'a str> {
    scheme.options.iter().find(|o| o.key.as_str() == key).and_then(|o| match &o.value {
        authhost_plugin_api::OptionValue::Str(s) => Some(s.as_str()),
        _ => None,
    })
}

/// One security scheme per configured scheme that OpenAPI can describe.
fn security_schemes(config: &Config) -> Value {
    let mut schemes = Map::new();
    for scheme in &config.schemes {
        let described = match plugin_kind(scheme) {
            "basic" => json!({ "type": "http", "scheme": "basic" }),
            "token" => match option(scheme, "keyword").unwrap_or("Token") {
                "Bearer" => json!({ "type": "http", "scheme": "bearer" }),
                keyword => json!({
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": format!("`Authorization: {keyword} <key>` (DRF's TokenAuthentication)"),
                }),
            },
            "jwt" => match option(scheme, "keyword").unwrap_or("Bearer") {
                "Bearer" => json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
                keyword => json!({
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": format!("`Authorization: {keyword} <JWT>`"),
                }),
            },
            "session" => {
                schemes.insert(
                    format!("{}_csrf", scheme.name),
                    json!({
                        "type": "apiKey", "in": "header", "name": config.session.csrf_header_name,
                        "description": "Django's CSRF token, required with the session cookie on unsafe methods",
                    }),
                );
                json!({ "type": "apiKey", "in": "cookie", "name": config.session.cookie_name })
            }
            "x_username" => json!({ "type": "apiKey", "in": "header", "name": "X-USERNAME" }),
            "remote_user" => json!({
                "type": "apiKey", "in": "header", "name": option(scheme, "header").unwrap_or("X-Remote-User"),
                "description": "believed only from the scheme's trusted proxies",
            }),
            _ => continue,
        };
        schemes.insert(scheme.name.clone(), described);
    }
    Value::Object(schemes)
}

/// The chain's alternatives, and `{}` where anonymous requests may pass.
fn security(config: &Config, route: &RouteConfig) -> Value {
    let mut alternatives: Vec<Value> = Vec::new();
    for &i in &route.schemes {
        let scheme = &config.schemes[i];
        match plugin_kind(scheme) {
            "session" => {
                alternatives.push(json!({ scheme.name.clone(): [], format!("{}_csrf", scheme.name): [] }))
            }
            "basic" | "token" | "jwt" | "x_username" | "remote_user" => {
                alternatives.push(json!({ scheme.name.clone(): [] }))
            }
            _ => {}
        }
    }
    let anonymous_passes =
        matches!(route.permission, Permission::AllowAny | Permission::IsAuthenticatedOrReadOnly)
            || route.schemes.is_empty();
    if anonymous_passes || alternatives.is_empty() {
        alternatives.push(json!({}));
    }
    Value::Array(alternatives)
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": reference(schema) } } })
}

/// A body of login fields, as JSON, a form or multipart (DRF's parsers).
fn credentials_body(route: &RouteConfig) -> Value {
    let field = match route.login_field {
        authhost_plugin_api::LoginField::Username => "username",
        authhost_plugin_api::LoginField::Email => "email",
    };
    let schema = json!({
        "type": "object",
        "properties": { field: { "type": "string" }, "password": { "type": "string" } },
        "required": [field, "password"],
    });
    json!({
        "required": true,
        "content": {
            "application/json": { "schema": schema },
            "application/x-www-form-urlencoded": { "schema": schema },
            "multipart/form-data": { "schema": schema },
        },
    })
}

fn token_body() -> Value {
    let schema =
        json!({ "type": "object", "properties": { "token": { "type": "string" } }, "required": ["token"] });
    json!({ "required": true, "content": { "application/json": { "schema": schema }, "application/x-www-form-urlencoded": { "schema": schema } } })
}

/// What obtain_token answers, by the route's `fields`.
fn token_fields_schema(route: &RouteConfig) -> Value {
    let mut properties = Map::new();
    for field in &route.token_fields {
        let (name, schema) = match field {
            TokenField::Token => ("token", json!({ "type": "string" })),
            TokenField::UserId => ("user_id", json!({ "type": "integer" })),
            TokenField::Username => ("username", json!({ "type": "string" })),
            TokenField::Email => ("email", json!({ "type": "string" })),
            TokenField::IsStaff => ("is_staff", json!({ "type": "boolean" })),
        };
        properties.insert(name.into(), schema);
    }
    let required: Vec<&String> = properties.keys().collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The operations a route's handler answers, by method.
fn operations(config: &Config, route: &RouteConfig) -> Map<String, Value> {
    let id = |method: &str| operation_id(method, route);
    let op = |method: &str, summary: &str, responses: Value| json!({ "operationId": id(method), "summary": summary, "responses": responses });
    let with_body = |mut operation: Value, body: Value| {
        operation["requestBody"] = body;
        operation
    };
    let mut ops = Map::new();
    let empty = json!({ "description": "No content" });
    match route.handler {
        Handler::Whoami => {
            for method in ["get", "post"] {
                ops.insert(
                    method.into(),
                    op(
                        method,
                        "Who the request authenticated as",
                        json!({ "200": json_response("The user, or the anonymous user", "Whoami") }),
                    ),
                );
            }
        }
        Handler::Health => {
            ops.insert(
                "get".into(),
                op(
                    "get",
                    "Health",
                    json!({
                        "200": json_response("Serving", "Health"),
                        "503": json_response("A pool cannot serve", "Health"),
                    }),
                ),
            );
        }
        Handler::ObtainToken => {
            let answer = json!({ "description": "The user's token", "content": { "application/json": { "schema": token_fields_schema(route) } } });
            ops.insert("post".into(), with_body(op("post", "DRF's obtain_auth_token", json!({
                "200": answer,
                "400": json_response("Missing fields, or credentials that do not log in", "BadRequest"),
            })), credentials_body(route)));
        }
        Handler::Login => {
            ops.insert(
                "get".into(),
                op(
                    "get",
                    "A CSRF token (and its cookie)",
                    json!({ "200": json_response("The masked CSRF token", "Csrf") }),
                ),
            );
            ops.insert("post".into(), with_body(op("post", "Log in: a session cookie", json!({
                "200": json_response("Logged in", "LoggedIn"),
                "400": json_response("Missing fields, or credentials that do not log in", "BadRequest"),
            })), credentials_body(route)));
        }
        Handler::Logout => {
            ops.insert("post".into(), op("post", "End the session", json!({ "204": empty })));
        }
        Handler::LoginToken => {
            ops.insert("post".into(), op("post", "knox's login: a token for this client", json!({
                "200": json_response("A new per-client token", "KnoxToken"),
                "403": json_response("The user holds limit_per_user tokens already (knox's key: error)", "KnoxLimit"),
            })));
        }
        Handler::LogoutToken | Handler::LogoutAll => {
            ops.insert("post".into(), op("post", "knox's logout", json!({ "204": empty })));
        }
        Handler::ObtainJwt => {
            let mut issued = json_response("A JWT", "Jwt");
            issued["links"] = jwt_links(config, route);
            ops.insert("post".into(), with_body(op("post", "A JWT for credentials (drf-jwt)", json!({
                "200": issued,
                "400": json_response("Missing fields, or credentials that do not log in", "BadRequest"),
            })), credentials_body(route)));
        }
        Handler::RefreshJwt | Handler::VerifyJwt => {
            let mut issued = json_response("A JWT", "Jwt");
            issued["links"] = jwt_links(config, route);
            ops.insert(
                "post".into(),
                with_body(
                    op(
                        "post",
                        "drf-jwt's refresh or verify",
                        json!({
                            "200": issued,
                            "400": json_response("A token that is not good", "BadRequest"),
                        }),
                    ),
                    token_body(),
                ),
            );
        }
        Handler::ForwardAuth | Handler::Allow => {
            let allowed = json!({ "description": "Allowed; the identity headers name the user" });
            ops.insert("get".into(), op("get", "A decision for another proxy", json!({ "200": allowed })));
        }
        Handler::Metrics => {
            ops.insert("get".into(), op("get", "Prometheus metrics", json!({
                "200": { "description": "The Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } },
            })));
        }
        Handler::LoginPage | Handler::LogoutPage => {
            let html = json!({ "description": "The page", "content": { "text/html": { "schema": { "type": "string" } } } });
            ops.insert("get".into(), op("get", "An HTML page", json!({ "200": html.clone() })));
            let form = json!({ "content": { "application/x-www-form-urlencoded": { "schema": { "type": "object" } } } });
            ops.insert(
                "post".into(),
                with_body(
                    op(
                        "post",
                        "The page's form",
                        json!({
                            "200": html,
                            "303": { "description": "Done: on to `next`" },
                        }),
                    ),
                    form,
                ),
            );
        }
        Handler::OpenApi => {
            ops.insert("get".into(), op("get", "This document", json!({
                "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } },
            })));
        }
        Handler::Proxy => {
            let upstream =
                route.upstream.as_ref().map(crate::config::UpstreamConfig::url).unwrap_or_default();
            for method in ["get", "post", "put", "patch", "delete"] {
                let mut operation = op(
                    method,
                    "Forwarded to the upstream once allowed",
                    json!({
                        "default": { "description": format!("The upstream's answer ({upstream})") },
                        "502": json_response("The upstream refused the connection", "Detail"),
                        "504": json_response("The upstream did not answer in time", "Detail"),
                    }),
                );
                operation["x-authhost-upstream"] = json!(upstream);
                ops.insert(method.into(), operation);
            }
        }
    }
    ops
}

/// Links from a JWT an operation answers with to the refresh and verify routes of the same
/// scheme, which take it in their body (what schemathesis's stateful phase follows).
fn jwt_links(config: &Config, route: &RouteConfig) -> Value {
    let mut links = Map::new();
    for other in &config.routes {
        if matches!(other.handler, Handler::RefreshJwt | Handler::VerifyJwt)
            && other.token_scheme == route.token_scheme
        {
            links.insert(
                format!("{}_{}", other.handler.name(), links.len()),
                json!({
                    "operationId": operation_id("post", other),
                    "requestBody": { "token": "$response.body#/token" },
                }),
            );
        }
    }
    Value::Object(links)
}

fn operation_id(method: &str, route: &RouteConfig) -> String {
    format!("{method}_{}", route.path.trim_matches('/').replace(['/', '-', '.'], "_"))
}

/// The refusals every operation of the route can answer with, in DRF's shapes.
fn add_refusals(responses: &mut Value, config: &Config, route: &RouteConfig) {
    let Some(responses) = responses.as_object_mut() else { return };
    if matches!(route.handler, Handler::LoginPage | Handler::LogoutPage) {
        // Django's CSRF failure page, in HTML, as the form posts are browsers'.
        responses.entry("403".to_owned()).or_insert_with(|| {
            json!({
                "description": "Not allowed (the permission), or the form's CSRF check failed (Django's HTML page)",
                "content": {
                    "application/json": { "schema": reference("Detail") },
                    "text/html": { "schema": { "type": "string" } },
                },
            })
        });
    }
    let mut add = |status: &str, description: &str, schema: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| json_response(description, schema));
    };
    add("400", "A malformed request (host, path, body)", "Detail");
    if !route.schemes.is_empty() || route.handler == Handler::ForwardAuth {
        add(
            "401",
            "Not authenticated, or credentials that fail (with the first scheme's challenge)",
            "Detail",
        );
    }
    add(
        "403",
        "Not allowed (the permission, CSRF), or not authenticated where the first scheme has no challenge",
        "Detail",
    );
    add("405", "A method the handler does not take (DRF's `Method \"X\" not allowed.`)", "Detail");
    add("408", "The body did not arrive in time", "Detail");
    add("413", "The body is larger than 1 MiB", "Detail");
    add("415", "A body type the handler does not parse", "Detail");
    if !route.throttles.is_empty() || config.failures.is_some() {
        add("429", "Throttled (DRF's `Request was throttled. Expected available in N seconds.`)", "Detail");
    }
    add("503", "The store, or the throttle store, cannot answer now", "Detail");
}

fn schemas() -> Value {
    let nullable_string = json!({ "type": ["string", "null"] });
    json!({
        "Detail": { "type": "object", "properties": { "detail": { "type": "string" } }, "required": ["detail"] },
        "BadRequest": {
            "description": "DRF's validation errors, or a body that does not parse",
            "anyOf": [{ "$ref": "#/components/schemas/FieldErrors" }, { "$ref": "#/components/schemas/Detail" }],
        },
        "FieldErrors": {
            "type": "object",
            "description": "DRF's validation errors: each field (or non_field_errors) with its messages",
            "additionalProperties": { "type": "array", "items": { "type": "string" } },
        },
        "Whoami": {
            "type": "object",
            "properties": { "user": nullable_string, "auth": nullable_string, "scheme": nullable_string, "is_staff": { "type": "boolean" } },
            "required": ["user", "auth", "scheme", "is_staff"],
        },
        "Health": {
            "type": "object",
            "properties": { "status": { "type": "string", "enum": ["ok", "unavailable"] }, "detail": { "type": "string" } },
            "required": ["status"],
        },
        "Csrf": { "type": "object", "properties": { "csrftoken": { "type": "string" } }, "required": ["csrftoken"] },
        "LoggedIn": {
            "type": "object",
            "properties": { "user": { "type": "string" }, "csrftoken": { "type": "string" } },
            "required": ["user", "csrftoken"],
        },
        "KnoxToken": {
            "type": "object",
            "properties": { "token": { "type": "string" }, "expiry": { "type": ["string", "null"], "format": "date-time" } },
            "required": ["token", "expiry"],
        },
        "KnoxLimit": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] },
        "Jwt": { "type": "object", "properties": { "token": { "type": "string" } }, "required": ["token"] },
    })
}
