//! The deployment files agree with sluice and with each other: the Kubernetes manifests parse
//! and their probe, ports and stop timeline match the config they carry, that config passes
//! `sluice check`, the image runs as non-root with a /healthz check, and the systemd unit
//! passes `systemd-analyze verify` (where systemd-analyze is installed).
//! `.ci/run` also validates the manifests against the Kubernetes schemas (kubernetes-validate).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;
use sluice_testkit::{output_text, scratch_dir};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of deploy/kubernetes.yaml, by kind.
fn manifests() -> Vec<Value> {
    let text = read("deploy/kubernetes.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("deploy/kubernetes.yaml parses"))
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in deploy/kubernetes.yaml");
    found[0]
}

fn seconds(config: &toml::Table, key: &str) -> Duration {
    let text = config[key].as_str().unwrap_or_else(|| panic!("{key} set"));
    humantime::parse_duration(text).unwrap()
}

fn port(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn kubernetes_manifests_match_the_config_they_carry() {
    let docs = manifests();
    let config_map = kind(&docs, "ConfigMap");
    let deployment = kind(&docs, "Deployment");
    let service = kind(&docs, "Service");

    // The ConfigMap carries deploy/sluice.toml verbatim (the image's default config too).
    let text = config_map["data"]["sluice.toml"].as_str().unwrap();
    assert_eq!(
        text,
        read("deploy/sluice.toml"),
        "ConfigMap and deploy/sluice.toml differ"
    );
    let config: toml::Table = text.parse().unwrap();

    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let named_port = |name: &str| -> u64 {
        let ports = container["ports"].as_sequence().unwrap();
        let p = ports.iter().find(|p| p["name"] == name);
        p.unwrap_or_else(|| panic!("container port {name:?}"))["containerPort"]
            .as_u64()
            .unwrap()
    };

    // Readiness is /healthz on the admin listener, which must be reachable on the pod IP.
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"], "/healthz");
    let admin = config["admin"].as_table().unwrap();
    assert_eq!(
        named_port(readiness["port"].as_str().unwrap()),
        port(admin["listen"].as_str().unwrap())
    );
    assert!(admin["listen"].as_str().unwrap().starts_with("0.0.0.0:"));
    assert_eq!(admin["allow_remote"].as_bool(), Some(true));
    // /healthz is 503 for the whole drain: a liveness probe on it would kill the pod mid-drain.
    assert_ne!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    // The data port is what the Service exposes; the admin port is not exposed.
    let web = config["routes"]["web"]["listen"].as_str().unwrap();
    assert_eq!(named_port("web"), port(web));
    let service_ports = service["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(service_ports.len(), 1);
    assert_eq!(service_ports[0]["targetPort"], "web");

    // Stop timeline: preStop sleep, then shutdown_delay (accepting, /healthz 503), then
    // shutdown_grace, all inside terminationGracePeriodSeconds so sluice cuts and logs before
    // the kubelet's SIGKILL.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .unwrap();
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let delay = seconds(&config, "shutdown_delay");
    let grace = seconds(&config, "shutdown_grace");
    assert!(
        !delay.is_zero(),
        "shutdown_delay keeps accepting while /healthz is 503"
    );
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let needed = Duration::from_secs(pre_stop) + delay + grace;
    assert!(
        Duration::from_secs(termination) > needed,
        "terminationGracePeriodSeconds {termination} must exceed preStop + shutdown_delay + shutdown_grace = {needed:?}"
    );

    // The ConfigMap is mounted as a directory (a subPath mount never sees updates) and
    // `--watch` reloads it when the kubelet swaps it.
    let args: Vec<_> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["run", "--config", "/etc/sluice/sluice.toml", "--watch"]
    );
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["mountPath"], "/etc/sluice");
    assert!(mounts[0].get("subPath").is_none());
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        config_map["metadata"]["name"]
    );

    // The image's user (Dockerfile) is the one the pod asserts.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(
        read("Dockerfile").contains(&format!("\nUSER {uid}:")),
        "Dockerfile USER is {uid}"
    );
}

/// The shipped container/Kubernetes config is valid for `sluice check`, once its cluster DNS
/// names (which resolve only inside a cluster) point at distinct loopback addresses.
#[test]
fn the_deploy_config_passes_sluice_check() {
    let mut config: toml::Table = read("deploy/sluice.toml").parse().unwrap();
    for (n, member) in config
        .get_mut("pools")
        .and_then(|p| p.as_table_mut())
        .unwrap()
        .iter_mut()
        .flat_map(|(_, pool)| pool["members"].as_array_mut().unwrap().iter_mut())
        .enumerate()
    {
        let addr = member["addr"].as_str().unwrap();
        assert!(addr.contains(".svc.cluster.local:"), "{addr}");
        member["addr"] = format!("127.0.0.{}:{}", n + 1, port(addr)).into();
    }
    let dir = scratch_dir("deploy-check");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn container_image_runs_as_non_root_with_a_healthz_check() {
    let dockerfile = read("Dockerfile");
    let froms = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert_eq!(
        froms, 2,
        "multi-stage: a build stage and a slim runtime stage"
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    let health = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK");
    assert!(health.contains("/dev/tcp/127.0.0.1/9901") && health.contains("GET /healthz"));
}

/// `systemd-analyze verify` on packaging/sluice.service, with its ExecStart pointed at the
/// binary under test (verify insists the executable exists). Warnings count as failures: an
/// unknown key is only a warning to systemd.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = read("packaging/sluice.service");
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/local/bin/sluice check --config /etc/sluice/sluice.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "DynamicUser=yes",
        "RestartPreventExitStatus=64",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "packaging/sluice.service lacks {line:?}"
        );
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: verify skipped (apt-get install systemd)");
        return;
    }
    let dir = scratch_dir("unit");
    let path: PathBuf = dir.join("sluice.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/sluice", env!("CARGO_BIN_EXE_sluice")),
    )
    .unwrap();
    // The socket unit is verified with its service beside it, as systemd loads them.
    let socket = dir.join("sluice.socket");
    std::fs::write(&socket, read("packaging/sluice.socket")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&path)
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}",
        output_text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
