//! Connections to the router under test.

use std::time::Duration;

use trecho_client::{Client, ClientError, ClientOptions};

/// Time allowed for each response. The router responds within about a second
/// even when a shard is cut off, so a call that takes longer counts as
/// hung.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the router with the tests' timeouts.
pub(crate) async fn connect(router: &str) -> Result<Client, ClientError> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Some(REQUEST_TIMEOUT),
    };
    Client::connect_with(router, options).await
}
