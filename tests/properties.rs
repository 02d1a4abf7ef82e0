//! Property tests (proptest; `cargo fuzz` needs a nightly toolchain CI does not have): config
//! parsing and the PROXY header writer never panic, whatever the input, and what the writer
//! produces parses back to the addresses it was given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use sluice::config::{self, ProxyProtocol};
use sluice::connect::proxy_protocol;

/// Keys and values from the real schema, so generated files get past the TOML parser and reach
/// validation, where the interesting rules are.
fn toml_doc() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "listen",
        "pool",
        "connect_timeout",
        "idle_timeout",
        "backlog",
        "buffer_size",
        "balance",
        "members",
        "min_healthy",
        "all_down",
        "slow_start",
        "interval",
        "timeout",
        "rise",
        "fall",
        "jitter",
        "send",
        "expect",
        "retry",
        "rate_limit",
        "weight",
        "tier",
        "addr",
        "relay",
        "pipe_size",
        "proxy_protocol",
        "on_limit",
        "queue_timeout",
        "max_connections",
        "bogus",
    ]);
    let value = prop_oneof![
        Just("\"127.0.0.1:0\"".to_string()),
        Just("\"web\"".to_string()),
        Just("\"2s\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"10%\"".to_string()),
        Just("\"hex:zz\"".to_string()),
        Just("[{ addr = \"127.0.0.1:1\", weight = 0 }]".to_string()),
        Just("{ attempts = 0, min_backoff = \"9s\" }".to_string()),
        Just("{ per_second = -1 }".to_string()),
        Just("[]".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        // No ':' here: a random `host:port` would send validation to DNS.
        "[a-z0-9.%\\[\\] ]{0,12}".prop_map(|s| format!("{s:?}")),
    ];
    let table = prop::sample::select(vec![
        "",
        "[routes.web]",
        "[routes.db]",
        "[pools.web]",
        "[pools.web.health]",
        "[pools.web.breaker]",
        "[admin]",
    ]);
    prop::collection::vec((table, prop::collection::vec((key, value), 0..6)), 0..6).prop_map(
        |tables| {
            let mut doc = String::new();
            for (header, entries) in tables {
                doc.push_str(header);
                doc.push('\n');
                for (k, v) in entries {
                    doc.push_str(&format!("{k} = {v}\n"));
                }
            }
            doc
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn config_parsing_never_panics_on_any_text(text in ".{0,400}") {
        if let Err(errors) = config::from_str(&text, None) {
            prop_assert!(!errors.is_empty());
            for e in errors.iter() {
                prop_assert!(e.to_string().starts_with("<command line>: "), "{e}");
            }
        }
    }

    #[test]
    fn config_validation_never_panics_and_names_every_problem(doc in toml_doc()) {
        match config::from_str(&doc, None) {
            Ok(c) => prop_assert!(!c.routes.is_empty()),
            Err(errors) => {
                for e in errors.iter() {
                    let line = e.to_string();
                    prop_assert!(line.starts_with("<command line>: "), "{line}");
                    prop_assert!(!line.ends_with(": "), "a problem without a reason: {line}");
                }
            }
        }
    }

    #[test]
    fn proxy_headers_parse_back_to_the_given_addresses(
        client in any_addr(),
        local in any_addr(),
    ) {
        let v1 = proxy_protocol::header(ProxyProtocol::V1, client, local).unwrap();
        let v1 = ppp::v1::Header::try_from(v1.as_slice()).expect("v1 parses");
        let (source, destination) = match v1.addresses {
            ppp::v1::Addresses::Tcp4(a) => (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port),
            ),
            ppp::v1::Addresses::Tcp6(a) => (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port),
            ),
            other => return Err(TestCaseError::fail(format!("v1 sent {other:?}"))),
        };
        prop_assert_eq!(canonical(source), canonical(client));
        prop_assert_eq!(canonical(destination), canonical(local));

        let v2 = proxy_protocol::header(ProxyProtocol::V2, client, local).unwrap();
        let v2 = ppp::v2::Header::try_from(v2.as_slice()).expect("v2 parses");
        let (source, destination) = match v2.addresses {
            ppp::v2::Addresses::IPv4(a) => (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port),
            ),
            ppp::v2::Addresses::IPv6(a) => (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port),
            ),
            other => return Err(TestCaseError::fail(format!("v2 sent {other:?}"))),
        };
        prop_assert_eq!(canonical(source), canonical(client));
        prop_assert_eq!(canonical(destination), canonical(local));
    }
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        // Dual-stack listeners see IPv4 clients as mapped IPv6.
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// The same endpoint whichever family it was written in (`::ffff:a.b.c.d` is `a.b.c.d`).
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}
