//! `admin:` — the admin server (`/metrics`, `/healthz`, `/readyz`, `/api/status`, the status
//! page at `/`; see [`crate::admin`]).
//!
//! ```yaml
//! admin:
//!   listen: 127.0.0.1:9464        # default; `--metrics-listen ADDR` overrides it
//!   token: ${PROCOS_ADMIN_TOKEN}  # required when `listen` is not a loopback address
//!   cockpit_url: https://camunda.example.com/camunda/app/cockpit/default/#/process-instance/{id}/runtime
//!   enabled: true                 # false: no admin server at all
//! ```
//!
//! Validation is pure and names `admin.*` paths; the token is a [`Secret`] and never echoed.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::Problem;
use super::secret::Secret;

/// The default address: loopback only, so no token is needed out of the box.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// Cockpit's process-instance page below the engine's origin; `{id}` is the instance id.
pub const COCKPIT_PATH: &str = "/camunda/app/cockpit/default/#/process-instance/{id}/runtime";

/// `admin:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Run the admin server at all (default true). Without it there is no `/metrics` either.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where it listens. Port 0 picks a free port (the log line "Admin server listening." says
    /// which).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token every route but `/healthz` and `/readyz` requires; required when `listen`
    /// is not a loopback address, so the page is never open to a network by accident. Empty
    /// means none (see [`AdminConfig::token`]).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Link to a process instance in Cockpit, `{id}` standing for its id. Default: the origin
    /// of `camunda.url` + [`COCKPIT_PATH`].
    #[serde(default)]
    pub cockpit_url: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            token: None,
            cockpit_url: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    // A constant that parses: checked by `the_default_is_loopback_without_a_token` below.
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

impl AdminConfig {
    /// Every problem of the section, each with its `admin.*` path.
    pub fn check(&self, out: &mut Vec<Problem>) {
        if !self.enabled {
            return;
        }
        if self.token().is_none() && !self.listen.ip().is_loopback() {
            out.push(Problem::new(
                "admin.token",
                format!(
                    "required: admin.listen {} is not a loopback address, so the admin server \
                     (status page, /api/status, /metrics) would be open to the network; set \
                     admin.token (e.g. ${{PROCOS_ADMIN_TOKEN}}) or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        if let Some(url) = &self.cockpit_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(Problem::new(
                    "admin.cockpit_url",
                    "must be an http:// or https:// URL",
                ));
            }
            if !url.contains("{id}") {
                out.push(Problem::new(
                    "admin.cockpit_url",
                    "must contain `{id}`, where the process instance id goes",
                ));
            }
        }
    }

    /// The token, when one was given: an empty value (`${PROCOS_ADMIN_TOKEN:-}` with the
    /// variable unset) is none, so one config serves a loopback-only and a token-protected setup.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref().filter(|t| !t.is_empty())
    }

    /// The Cockpit link template: `cockpit_url`, else derived from `camunda_url` (its scheme,
    /// host and port, credentials dropped); `None` when that URL has no origin.
    pub fn cockpit_template(&self, camunda_url: &str) -> Option<String> {
        if let Some(url) = &self.cockpit_url {
            return Some(url.clone());
        }
        let url = url::Url::parse(camunda_url).ok()?;
        let origin = url.origin();
        origin
            .is_tuple()
            .then(|| format!("{}{COCKPIT_PATH}", origin.ascii_serialization()))
    }

    /// `--metrics-listen ADDR`: the older flag, now an alias that sets `listen` (and turns the
    /// server on, since the command line asked for it).
    pub fn listen_on(&mut self, addr: SocketAddr) {
        self.enabled = true;
        self.listen = addr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &AdminConfig) -> Vec<Problem> {
        let mut out = Vec::new();
        c.check(&mut out);
        out
    }

    #[test]
    fn the_default_is_loopback_without_a_token() {
        let c = AdminConfig::default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(problems(&c).is_empty());
    }

    #[test]
    fn a_non_loopback_address_needs_a_token_and_says_so_at_its_path() {
        let mut c = AdminConfig::default();
        c.listen_on("0.0.0.0:9464".parse().expect("addr"));
        let p = problems(&c);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "admin.token");
        assert!(p[0].message.contains("0.0.0.0:9464"), "{}", p[0].message);
        c.token = Some(Secret::new("s3cr3t-admin"));
        assert!(problems(&c).is_empty());
        c.enabled = false;
        c.token = None;
        assert!(
            problems(&c).is_empty(),
            "a server that is off needs nothing"
        );
    }

    #[test]
    fn an_empty_token_is_none_and_does_not_open_a_public_address() {
        let mut c = AdminConfig {
            token: Some(Secret::new("")),
            ..Default::default()
        };
        assert!(c.token().is_none());
        assert!(problems(&c).is_empty(), "loopback without a token is fine");
        c.listen_on("0.0.0.0:9464".parse().expect("addr"));
        let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["admin.token"]);
    }

    #[test]
    fn a_cockpit_url_must_be_http_with_an_id() {
        let c = AdminConfig {
            cockpit_url: Some("cockpit.example.com/x".into()),
            ..Default::default()
        };
        let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["admin.cockpit_url", "admin.cockpit_url"]);
    }

    #[test]
    fn the_cockpit_link_defaults_to_the_engine_origin_without_credentials() {
        let c = AdminConfig::default();
        assert_eq!(
            c.cockpit_template("https://user:pw@camunda.example.com:8443/engine-rest?x=1")
                .as_deref(),
            Some(
                "https://camunda.example.com:8443/camunda/app/cockpit/default/#/process-instance/{id}/runtime"
            )
        );
        assert_eq!(c.cockpit_template("not a url"), None);
    }
}
