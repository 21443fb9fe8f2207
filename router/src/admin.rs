//! The admin methods, `admin.move_slots` and `admin.add_shard`, and the
//! admin token that guards them.
//!
//! Without an admin token in the router's configuration the methods are
//! off. A request must carry the same token, compared in time that does
//! not depend on how much of it matched. The token is never logged, and
//! no error message contains it. One router runs one admin method at a
//! time.

mod add_shard;
mod move_slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trecho_common::error::Error;
use trecho_common::protocol::methods::{AddShardParams, AdminToken, MoveSlotsParams};

use crate::cluster::Cluster;
use crate::config::{RouterConfig, ADMIN_TOKEN_VARIABLE};
use crate::dispatch::Pending;
use crate::response::Reply;

/// The admin token and the state shared by admin methods.
pub(crate) struct Admin {
    token: Option<AdminToken>,
    /// Lock held while an admin method runs, so that this router runs one
    /// at a time.
    running: tokio::sync::Mutex<()>,
    /// Count of requests rejected for a wrong token, which rate-limits the
    /// warning.
    rejected: AtomicU64,
    /// Timeout for each shard request of an admin method, except the move
    /// itself.
    request_timeout: Duration,
}

impl Admin {
    /// Takes the token and the request timeout from `config`.
    pub(crate) fn new(config: &RouterConfig) -> Self {
        Admin {
            token: config.admin_token.clone(),
            running: tokio::sync::Mutex::new(()),
            rejected: AtomicU64::new(0),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        }
    }

    /// Checks the admin token of a request for `method`.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Unauthorized`] when no token is configured or
    /// `given` differs from it.
    pub(crate) fn authorize(&self, method: &str, given: &AdminToken) -> Result<(), Error> {
        let Some(expected) = &self.token else {
            tracing::debug!(method, "admin request while admin methods are off");
            return Err(Error::Unauthorized {
                message: format!(
                    "admin methods are off on this router because it has no admin token; set \
                     admin_token in its config file, the {ADMIN_TOKEN_VARIABLE} environment \
                     variable or --admin-token, and restart it"
                ),
            });
        };
        if given.matches(&expected.0) {
            return Ok(());
        }
        let rejected = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        if rejected.is_power_of_two() {
            tracing::warn!(
                method,
                rejected_total = rejected,
                "admin request with a wrong admin token"
            );
        }
        Err(Error::Unauthorized {
            message: format!(
                "the admin token is wrong; send the admin_token of this router's configuration \
                 (its config file, the {ADMIN_TOKEN_VARIABLE} environment variable or \
                 --admin-token)"
            ),
        })
    }
}

/// Serves `admin.move_slots`. The returned future checks the token, waits
/// for any other admin method on this router to end, and moves the slots.
pub(crate) fn move_slots(cluster: &Arc<Cluster>, params: MoveSlotsParams) -> Pending {
    let cluster = cluster.clone();
    Box::pin(async move {
        let admin = cluster.admin();
        admin.authorize("admin.move_slots", &params.token)?;
        let _running = admin.running.lock().await;
        let result = move_slots::run(&cluster, params.first, params.last, params.to).await?;
        Ok(Reply::MoveSlots(result))
    })
}

/// Serves `admin.add_shard`. The returned future checks the token, waits
/// for any other admin method on this router to end, and adds the shard.
pub(crate) fn add_shard(cluster: &Arc<Cluster>, params: AddShardParams) -> Pending {
    let cluster = cluster.clone();
    Box::pin(async move {
        let admin = cluster.admin();
        admin.authorize("admin.add_shard", &params.token)?;
        let _running = admin.running.lock().await;
        let result = add_shard::run(&cluster, params.address).await?;
        Ok(Reply::AddShard(result))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(token: Option<&str>) -> Admin {
        let config = RouterConfig {
            admin_token: token.map(|t| AdminToken(t.to_owned())),
            ..RouterConfig::default()
        };
        Admin::new(&config)
    }

    fn message(error: Error) -> String {
        match error {
            Error::Unauthorized { message } => message,
            other => panic!("expected unauthorized, got {other:?}"),
        }
    }

    #[test]
    fn no_configured_token_turns_admin_off() {
        let error = admin(None)
            .authorize("admin.add_shard", &AdminToken("anything".into()))
            .unwrap_err();
        assert_eq!(error.code(), 1012);
        assert_eq!(error.kind(), Some("unauthorized"));
        let message = message(error);
        assert!(message.contains("admin methods are off"), "{message}");
        assert!(message.contains("TRECHO_ADMIN_TOKEN"), "{message}");
    }

    #[test]
    fn wrong_token_is_unauthorized_without_echo() {
        let admin = admin(Some("s3cret-token"));
        for given in ["", "s3cret", "s3cret-token2", "S3CRET-TOKEN"] {
            let error = admin
                .authorize("admin.move_slots", &AdminToken(given.into()))
                .unwrap_err();
            assert_eq!(error.kind(), Some("unauthorized"), "{given:?}");
            let message = message(error);
            assert!(message.contains("token is wrong"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        assert_eq!(admin.rejected.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn right_token_is_accepted() {
        let admin = admin(Some("s3cret-token"));
        let given = AdminToken("s3cret-token".into());
        assert_eq!(admin.authorize("admin.move_slots", &given), Ok(()));
        assert_eq!(admin.rejected.load(Ordering::Relaxed), 0);
    }
}
