use super::*;

fn config(text: &str) -> Config {
    crate::config::from_str(text, None).expect("valid")
}

const POOL: &str = r#"
[routes.db]
listen = "127.0.0.1:0"
pool = "db"
[pools.db]
members = [
  { addr = "10.0.0.1:5432" },
  { addr = "db.example:5432", weight = 3 },
  { srv = "_pg._tcp.example", tier = 1 },
]
"#;

fn target(addr: &str, tier_offset: u8, weight: Option<u32>) -> Target {
    Target {
        addr: addr.parse().unwrap(),
        tier_offset,
        weight,
    }
}

#[test]
fn entries_validate_without_resolving_and_expand_to_one_member_per_address() {
    let c = config(POOL);
    let pool = &c.pools[0];
    assert_eq!(
        pool.members.len(),
        1,
        "only the literal member is resolved at load"
    );
    assert_eq!(pool.dns.len(), 2);
    assert_eq!(c.summary(), "routes=1 pools=1 members=3");

    let host = DnsQuery::Host {
        host: "db.example".into(),
        port: 5432,
    };
    let srv = DnsQuery::Srv {
        name: "_pg._tcp.example".into(),
    };
    let mut answers = Answers::new();
    answers.insert(
        host.clone(),
        vec![
            target("10.0.0.2:5432", 0, None),
            target("10.0.0.3:5432", 0, None),
        ],
    );
    answers.insert(
        srv,
        vec![
            target("10.0.1.1:6432", 0, Some(7)),
            target("10.0.1.2:6432", 1, Some(1)),
        ],
    );
    let running = expand(&c, &answers);
    let members: Vec<(&str, u32, u8)> = running.pools[0]
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.weight, m.tier))
        .collect();
    assert_eq!(
        members,
        [
            ("10.0.0.1:5432", 1, 0),
            ("db.example:5432 (10.0.0.2)", 3, 0),
            ("db.example:5432 (10.0.0.3)", 3, 0),
            ("_pg._tcp.example (10.0.1.1:6432)", 7, 1),
            ("_pg._tcp.example (10.0.1.2:6432)", 1, 2),
        ]
    );

    // A name that has no answer yet adds nothing; an address a literal member has is not
    // added twice.
    answers.remove(&host);
    answers.insert(host, vec![target("10.0.0.1:5432", 0, None)]);
    let running = expand(&c, &answers);
    assert_eq!(running.pools[0].members.len(), 3);
}

#[test]
fn dns_keys_are_validated_like_the_rest() {
    let errors = crate::config::from_str(
        r#"
[dns]
servers = ["127.0.0.1:5353", "nameserver"]
min_ttl = "10s"
max_ttl = "5s"
[routes.db]
listen = "127.0.0.1:0"
pool = "db"
[pools.db]
members = [{ addr = "db.example:5432", srv = "_pg._tcp.example" }, { addr = "bad name:1" }]
"#,
        Some(std::path::Path::new("f.toml")),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        errors,
        "f.toml: dns.servers = \"nameserver\": not an IP address with port; write e.g. \"127.0.0.1:8080\" or \"[::1]:8080\" (line 3, column 11)\n\
         f.toml: dns.min_ttl = \"10s\": must not exceed max_ttl (5s) (line 4, column 11)\n\
         f.toml: pools.db.members[0].srv = \"_pg._tcp.example\": a member has either addr or srv, not both (line 10, column 46)\n\
         f.toml: pools.db.members[1].addr = \"bad name:1\": \"bad name\" is not a host name (letters, digits, '-', '_' and '.') (line 10, column 77)"
    );
}
