use trecho_common::schedule::Schedule;

use super::*;

fn empty_schedule() -> Schedule {
    Schedule {
        airports: Vec::new(),
        flights: Vec::new(),
    }
}

fn start(spec: &str) -> Cluster {
    let map = ShardMap::parse_spec(1, spec).unwrap();
    Cluster::start(map, empty_schedule(), &RouterConfig::default()).unwrap()
}

fn shard_ids<'a>(links: impl Iterator<Item = (usize, &'a ShardLink)>) -> Vec<u32> {
    links.map(|(_, link)| link.shard()).collect()
}

fn owner(cluster: &Cluster, slot: u16) -> u32 {
    cluster.link(cluster.owner_of_slot(slot)).shard()
}

#[tokio::test]
async fn route_by_links_shards_new_to_the_router() {
    let cluster = start("0=127.0.0.1:9@0-16383");
    assert_eq!(cluster.link_count(), 1);
    let grown = ShardMap::parse_spec(
        2,
        "0=127.0.0.1:9@0-99,200-16383;5=127.0.0.1:10@100-199;6=127.0.0.1:11@",
    )
    .unwrap();
    assert!(cluster.route_by(&grown));
    assert_eq!(cluster.link_count(), 3);
    assert_eq!(owner(&cluster, 150), 5);
    assert_eq!(owner(&cluster, 99), 0);
    assert_eq!(owner(&cluster, 200), 0);
    assert_eq!(shard_ids(cluster.links()), [0, 5, 6]);
    assert_eq!(
        shard_ids(cluster.owner_links()),
        [0, 5],
        "shard 6 owns no slots"
    );
    assert_eq!(cluster.map(), grown);
    assert_eq!(cluster.map_version.load(Ordering::Relaxed), 2);
    assert_eq!(cluster.link_index(6), Some(2));
}

#[tokio::test]
async fn shard_left_without_slots_keeps_its_link() {
    let cluster = start("0=127.0.0.1:9@0-8191;1=127.0.0.1:10@8192-16383");
    let shrunk = ShardMap::parse_spec(2, "0=127.0.0.1:9@0-16383;1=127.0.0.1:10@").unwrap();
    assert!(cluster.route_by(&shrunk));
    assert_eq!(owner(&cluster, 16383), 0);
    assert_eq!(shard_ids(cluster.links()), [0, 1]);
    assert_eq!(shard_ids(cluster.owner_links()), [0]);
}

#[tokio::test]
async fn added_shard_stays_until_the_shards_name_it() {
    let cluster = start("0=127.0.0.1:9@0-16383");
    cluster.add_empty_shard(4, "127.0.0.1:12").await.unwrap();
    assert_eq!(shard_ids(cluster.links()), [0, 4]);
    assert!(cluster.map().shard(4).unwrap().slots.is_empty());
    assert_eq!(shard_ids(cluster.owner_links()), [0]);

    // A map from the shards that lacks the added shard gets it back.
    let from_shards = ShardMap::parse_spec(1, "0=127.0.0.1:9@0-16383").unwrap();
    let merged = cluster.with_added(from_shards).unwrap();
    assert_eq!(merged.shard(4).unwrap().address, "127.0.0.1:12");

    // Once the shards' map names it, their entry wins.
    let moved = ShardMap::parse_spec(2, "0=127.0.0.1:9@0-99;4=127.0.0.1:12@100-16383").unwrap();
    let merged = cluster.with_added(moved.clone()).unwrap();
    assert_eq!(merged, moved);
    assert!(cluster.added.lock().unwrap().is_empty());
}

#[tokio::test]
async fn added_shard_with_a_taken_id_is_rejected() {
    let cluster = start("0=127.0.0.1:9@0-16383");
    let error = cluster
        .add_empty_shard(0, "127.0.0.1:12")
        .await
        .unwrap_err();
    assert_eq!(error.code(), -32602, "{error}");
    assert_eq!(cluster.map().shards.len(), 1);
    assert_eq!(cluster.link_count(), 1);
}

#[test]
fn same_routes_ignores_shard_order_and_range_splits() {
    let map = |spec: &str| ShardMap::parse_spec(2, spec).unwrap();
    let plain = map("0=a:1@0-8191;1=b:2@8192-16383");
    let split = map("1=b:2@8192-9000,9001-16383;0=a:1@0-8191");
    assert!(same_routes(&plain, &split));
    let moved = map("0=a:1@0-8192;1=b:2@8193-16383");
    assert!(!same_routes(&plain, &moved));
    let readdressed = map("0=a:1@0-8191;1=c:3@8192-16383");
    assert!(!same_routes(&plain, &readdressed));
    let newer = ShardMap::parse_spec(3, "0=a:1@0-8191;1=b:2@8192-16383").unwrap();
    assert!(!same_routes(&plain, &newer));
}
