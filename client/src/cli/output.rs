//! Printing results as tables or JSON, and errors to standard error.

use serde::Serialize;
use trecho_client::ClientError;

/// Prints `value` as pretty JSON when `json` is set, or as the text
/// `render` makes of it.
pub(crate) fn print_result<T: Serialize>(
    json: bool,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", render(value));
    }
    Ok(())
}

/// Prints a note to standard error, so that `--json` output stays valid.
pub(crate) fn note(text: &str) {
    eprintln!("{text}");
}

/// Prints `error` to standard error as `error: ...`, with the JSON-RPC
/// error's kind and code when the router returned one.
pub(crate) fn print_error(error: &anyhow::Error) {
    eprintln!("error: {}", describe(error));
}

/// Joins the error's context and causes with ": ". A [`ClientError`]
/// already names its cause, so the chain stops there.
fn describe(error: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    let mut rpc_suffix = None;
    for cause in error.chain() {
        parts.push(cause.to_string());
        if let Some(client_error) = cause.downcast_ref::<ClientError>() {
            rpc_suffix = client_error.rpc().map(|rpc| match rpc.kind() {
                Some(kind) => format!(" (kind {kind}, code {})", rpc.code),
                None => format!(" (code {})", rpc.code),
            });
            break;
        }
    }
    let mut text = parts.join(": ");
    text.push_str(&rpc_suffix.unwrap_or_default());
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use trecho_client::RpcError;

    #[test]
    fn rpc_error_shows_message_kind_and_code() {
        let error = trecho_common::Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 2,
            left: 1,
        };
        let object = error.to_json();
        let rpc = RpcError::new(1001, error.to_string(), Some(object["data"].clone()));
        let error = anyhow::Error::new(ClientError::Rpc(Box::new(rpc)));
        assert_eq!(
            describe(&error),
            "sold out: segment AD1-2026-12-20 has 1 seats left, 2 requested (kind sold_out, code 1001)"
        );
    }

    #[test]
    fn connect_error_names_its_cause_once() {
        let source = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source,
        };
        let error = Err::<(), _>(error).context("status failed").unwrap_err();
        let text = describe(&error);
        assert!(text.starts_with("status failed: cannot connect"), "{text}");
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(text.contains("trecho cluster"), "{text}");
    }

    #[test]
    fn other_errors_show_every_cause() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Err::<(), _>(inner)
            .context("cannot read routes.dat")
            .unwrap_err();
        assert_eq!(describe(&error), "cannot read routes.dat: no such file");
    }
}
