//! The README's producer table states the defaults the code has: each row's
//! default cell is checked against `ProducerOptions::default()` (and the
//! consumer's against `ConsumerOptions::default()`), so the two cannot
//! drift apart.
#![cfg(feature = "client")]

use kvs_core::consumer::ConsumerOptions;
use kvs_core::producer::ProducerOptions;

/// The default cell of the README table row whose first cell starts with
/// `policy`.
fn default_cell(readme: &str, policy: &str) -> String {
    readme
        .lines()
        .filter(|l| l.starts_with("| "))
        .find_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            cells[0]
                .trim_start_matches("| ")
                .starts_with(policy)
                .then(|| cells.get(1).map(|c| c.trim().to_owned()))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no README row for {policy}"))
}

fn secs(d: std::time::Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[test]
fn the_readme_states_the_producer_defaults() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let o = ProducerOptions::default();
    assert_eq!(
        default_cell(&readme, "buffer"),
        format!(
            "{} MiB, {}",
            o.max_buffer_bytes >> 20,
            secs(o.max_buffer_duration)
        )
    );
    assert_eq!(
        default_cell(&readme, "pressure"),
        format!("`{:?}`", o.pressure)
    );
    assert_eq!(
        default_cell(&readme, "leading frames"),
        format!("`{:?}`", o.leading)
    );
    assert_eq!(
        default_cell(&readme, "reconnect"),
        format!(
            "{} doubling to {}, full jitter",
            secs(o.reconnect.base),
            secs(o.reconnect.cap)
        )
    );
    assert!(o.rotation_jitter);
    assert_eq!(
        default_cell(&readme, "rotation"),
        format!("{} min ± 10 %", o.rotation_age.as_secs() / 60)
    );
    assert_eq!(default_cell(&readme, "ACK timeout"), secs(o.ack_timeout));
    let fragments = default_cell(&readme, "fragments");
    assert!(o.fragments.min_duration.is_zero());
    assert!(
        fragments.starts_with("a fragment per video key frame")
            && fragments.ends_with(&format!("at most {}", secs(o.fragments.max_duration))),
        "{fragments}"
    );
    let lateness = format!("`max_lateness` ({})", secs(o.max_lateness));
    assert!(readme.contains(&lateness), "the README names {lateness}");
}

#[test]
fn the_readme_states_the_consumer_defaults() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let o = ConsumerOptions::default();
    let line = format!(
        "- Settings (`ConsumerOptions`, all at once with `options(..)`): backoff {} to {}, read-ahead {} fragments.",
        secs(o.backoff.base),
        secs(o.backoff.cap),
        o.read_ahead
    );
    assert!(readme.contains(&line), "the README says {line}");
}

#[test]
fn the_readme_states_the_client_defaults() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let cell = |name: &str| {
        readme
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("| "))
            .find_map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                (cells[0].trim_start_matches("| ") == name)
                    .then(|| cells.get(1).map(|c| c.trim().to_owned()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no README row for {name}"))
    };
    let c = kvs_core::client::ClientConfig::default();
    assert_eq!(
        cell("retry"),
        format!(
            "{} attempts, {} doubling to {}",
            c.retry.max_attempts,
            secs(c.retry.base),
            secs(c.retry.cap)
        )
    );
    assert_eq!(cell("timeout"), secs(c.timeout));
    assert_eq!(
        cell("endpoint_ttl"),
        format!("{} min", c.endpoint_ttl.as_secs() / 60)
    );
    assert_eq!(
        cell("max_response_bytes"),
        format!("{} MiB", c.max_response_bytes >> 20)
    );
    // `new` has the same defaults.
    let n = kvs_core::client::ClientConfig::new("eu-west-1", kvs_core::auth::DefaultChain::new());
    assert_eq!(
        (n.retry, n.timeout, n.endpoint_ttl, n.max_response_bytes),
        (c.retry, c.timeout, c.endpoint_ttl, c.max_response_bytes)
    );
}

/// A client needs a region: none found is a configuration error that says
/// where one comes from.
#[test]
fn no_region_is_a_configuration_error() {
    let cfg = kvs_core::client::ClientConfig {
        region: String::new(),
        ..kvs_core::client::ClientConfig::new("x", kvs_core::auth::DefaultChain::new())
    };
    let e = kvs_core::client::KvsClient::new(cfg).unwrap_err();
    assert!(
        matches!(&e, kvs_core::client::ClientError::Config(m) if m.contains("AWS_REGION")),
        "{e}"
    );
}
