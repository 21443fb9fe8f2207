//! Arguments of `trecho admin`: moving slots, adding and removing shards.

use clap::{Args, Subcommand};
use trecho_common::hashing::SLOT_COUNT;
use trecho_common::protocol::methods::AdminToken;

use super::ClientArgs;

/// `trecho admin ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Move one slot or a range of slots to shard ID, in batches.
    ///
    /// Slots that shard ID owns already are skipped, so running the same
    /// command again after an interruption continues where it stopped.
    MoveSlots(MoveSlotsArgs),
    /// Add the shard at ADDRESS to the cluster, then rebalance onto it.
    ///
    /// Run it again after an interruption: a shard already in the map at
    /// ADDRESS is not added twice, and the rebalance continues.
    AddShard(AddShardArgs),
    /// Move every slot of shard ID to the other shards, evenly, so that it
    /// can be stopped.
    RemoveShard(RemoveShardArgs),
    /// Even out the segments per shard over the shards that own slots,
    /// moving as few slots as needed, and print the plan before moving.
    Rebalance(RebalanceArgs),
}

/// Options of every admin command.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The router's admin token. Prefer TRECHO_ADMIN_TOKEN: other users of
    /// the machine can read command lines.
    #[arg(
        long,
        env = "TRECHO_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = admin_token
    )]
    pub(crate) token: Option<AdminToken>,
    /// Maximum number of slots per move. Writes to a move's slots wait while
    /// the shards hand them over, so smaller batches keep each wait shorter.
    #[arg(
        long,
        default_value_t = 256,
        value_name = "SLOTS",
        value_parser = clap::value_parser!(u16).range(1..=i64::from(SLOT_COUNT))
    )]
    pub(crate) batch: u16,
}

/// `trecho admin move-slots`.
#[derive(Debug, Args)]
pub(crate) struct MoveSlotsArgs {
    /// The slots: one slot N, or a range FIRST-LAST, from 0 to 16383.
    #[arg(value_name = "FIRST-LAST", value_parser = slot_range)]
    pub(crate) range: SlotRange,
    /// Id of the shard that receives the slots.
    #[arg(long, value_name = "ID")]
    pub(crate) to: u32,
    /// Print the plan without moving anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `trecho admin add-shard`.
#[derive(Debug, Args)]
pub(crate) struct AddShardArgs {
    /// Address, as HOST:PORT, at which the new shard accepts connections
    /// from routers and shards, as the router reaches it.
    #[arg(value_name = "HOST:PORT")]
    pub(crate) address: String,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `trecho admin remove-shard`.
#[derive(Debug, Args)]
pub(crate) struct RemoveShardArgs {
    /// The shard to empty.
    #[arg(value_name = "ID")]
    pub(crate) id: u32,
    /// Print the plan without moving anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `trecho admin rebalance`.
#[derive(Debug, Args)]
pub(crate) struct RebalanceArgs {
    /// Print the plan without moving anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// An inclusive range of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotRange {
    /// First slot.
    pub(crate) first: u16,
    /// Last slot, inclusive.
    pub(crate) last: u16,
}

/// Reads `N` or `FIRST-LAST`.
fn slot_range(text: &str) -> Result<SlotRange, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let parse = |part: &str| {
        part.trim()
            .parse::<u16>()
            .ok()
            .filter(|&slot| slot < SLOT_COUNT)
            .ok_or_else(|| {
                format!(
                    "invalid slot {part:?}: slots are whole numbers from 0 to {}, \
                     given as N or FIRST-LAST",
                    SLOT_COUNT - 1
                )
            })
    };
    let range = SlotRange {
        first: parse(first)?,
        last: parse(last)?,
    };
    if range.first > range.last {
        return Err(format!(
            "invalid slot range {text}: the first slot must not be above the last"
        ));
    }
    Ok(range)
}

fn admin_token(text: &str) -> Result<AdminToken, String> {
    if text.is_empty() {
        return Err("the admin token is empty; give the router's admin token".to_owned());
    }
    Ok(AdminToken(text.to_owned()))
}
