//! The Kubernetes manifests in `deploy/kubernetes/`: they pass `validate.sh` (Kubernetes'
//! OpenAPI schemas, strict), and they agree with sluice itself: the probes reach the admin
//! listener's `/readyz` and `/healthz`, the termination grace period outlasts `--grace`,
//! sluice reads the ConfigMap it mounts, every variable the config reads (tokens, SASL user
//! name and password) is set from a Secret, and the binary accepts the config with those
//! variables set.
//!
//! `.ci/run` installs kubernetes-validate (`deploy/kubernetes/requirements.txt`). Elsewhere the
//! schema check is skipped with the reason when it is not installed; in CI it must be there.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use yaml_rust2::{Yaml, YamlLoader};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// The margin sluice gives its triggers past `--grace` for their final offset commit
/// (`Running::shutdown` in `src/app.rs`).
const COMMIT_MARGIN: Duration = Duration::from_secs(5);

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every document of a manifest file.
fn documents(file: &str) -> Vec<Yaml> {
    let path = Path::new(DIR).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
}

/// The resource of `kind` named `name` in `file`.
fn resource(file: &str, kind: &str, name: &str) -> Yaml {
    documents(file)
        .into_iter()
        .find(|doc| {
            doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} named {name} in {file}"))
}

/// The item of a list (containers, ports, env, volumes) with this `name`.
fn named<'a>(list: &'a Yaml, name: &str) -> &'a Yaml {
    list.as_vec()
        .into_iter()
        .flatten()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("nothing named {name} in {list:?}"))
}

fn text<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not text: {yaml:?}"))
}

fn number(yaml: &Yaml, what: &str) -> i64 {
    yaml.as_i64()
        .unwrap_or_else(|| panic!("{what} is not a number: {yaml:?}"))
}

/// The Deployment's pod spec.
fn pod_spec() -> Yaml {
    resource("deployment.yaml", "Deployment", "sluice")["spec"]["template"]["spec"].clone()
}

/// A container's port, given by number or by name, as a number.
fn container_port(container: &Yaml, port: &Yaml) -> i64 {
    match port {
        Yaml::Integer(port) => *port,
        Yaml::String(name) => number(
            &named(&container["ports"], name)["containerPort"],
            &format!("port {name}"),
        ),
        other => panic!("a port is a number or a name, found {other:?}"),
    }
}

/// The sluice config text in the ConfigMap the Deployment mounts.
fn config_text() -> String {
    let spec = pod_spec();
    let map = spec["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .find_map(|volume| volume["configMap"]["name"].as_str())
        .expect("the Deployment mounts a ConfigMap")
        .to_owned();
    let config_map = resource("configmap.yaml", "ConfigMap", &map);
    text(
        &config_map["data"]["sluice.yaml"],
        "the ConfigMap's sluice.yaml",
    )
    .to_owned()
}

fn parse_config(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .expect("the sluice config is YAML")
        .into_iter()
        .next()
        .expect("the sluice config has a document")
}

/// The port of a `listen` address in the sluice config.
fn listen_port(config: &Yaml, section: &str) -> (SocketAddr, i64) {
    let addr: SocketAddr = text(&config[section]["listen"], &format!("{section}.listen"))
        .parse()
        .unwrap_or_else(|err| panic!("{section}.listen: {err}"));
    (addr, i64::from(addr.port()))
}

/// The value after `flag` in a container's args (`--flag VALUE` or `--flag=VALUE`).
fn arg(container: &Yaml, flag: &str) -> String {
    let args: Vec<&str> = container["args"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(|arg| text(arg, "an argument"))
        .collect();
    let prefix = format!("{flag}=");
    args.iter()
        .enumerate()
        .find_map(|(index, arg)| {
            if *arg == flag {
                args.get(index + 1).map(|value| (*value).to_owned())
            } else {
                arg.strip_prefix(&prefix).map(str::to_owned)
            }
        })
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
}

/// Every `{env: NAME}` the config reads a secret from.
fn env_references(yaml: &Yaml, names: &mut Vec<String>) {
    match yaml {
        Yaml::Hash(map) => {
            for (key, value) in map {
                if key.as_str() == Some("env")
                    && let Some(name) = value.as_str()
                {
                    names.push(name.to_owned());
                }
                env_references(value, names);
            }
        }
        Yaml::Array(items) => {
            for item in items {
                env_references(item, names);
            }
        }
        _ => {}
    }
}

/// Whether python3 can import kubernetes_validate; in CI it must.
fn kubernetes_validate_installed() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubernetes-validate must be installed in CI (see .ci/run)"
        );
        eprintln!(
            "skipped: python3 cannot import kubernetes_validate (python3 -m pip install -r deploy/kubernetes/requirements.txt)"
        );
    }
    ok
}

#[test]
fn manifests_pass_the_strict_schema_check() {
    if !kubernetes_validate_installed() {
        return;
    }
    let output = Command::new("bash")
        .arg("deploy/kubernetes/validate.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "validate.sh failed:\n{out}{}",
        stderr(&output)
    );
    for file in [
        "configmap.yaml",
        "deployment.yaml",
        "pdb.yaml",
        "secret.yaml",
        "service.yaml",
    ] {
        assert!(
            out.contains(&format!("/{file}: ")),
            "{file} not checked:\n{out}"
        );
    }
    println!("{out}");
}

#[test]
fn the_schema_check_fails_on_a_misspelled_field() {
    if !kubernetes_validate_installed() {
        return;
    }
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "sh") {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let deployment = copy.path().join("deployment.yaml");
    let text = std::fs::read_to_string(&deployment).unwrap();
    assert!(text.contains("readinessProbe:"));
    std::fs::write(
        &deployment,
        text.replacen("readinessProbe:", "readinesProbe:", 1),
    )
    .unwrap();
    let output = Command::new("bash")
        .arg(copy.path().join("validate.sh"))
        .output()
        .unwrap();
    let out = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a misspelled field passed:\n{out}{}",
        stderr(&output)
    );
    assert!(
        out.contains("FAIL") && out.contains("'readinesProbe' was unexpected"),
        "{out}"
    );
}

#[test]
fn probes_and_scrapes_reach_the_admin_listener() {
    let config = parse_config(&config_text());
    let (admin, admin_port) = listen_port(&config, "admin");
    assert!(
        admin.ip().is_unspecified(),
        "the kubelet reaches the admin listener only on every address, not {admin}"
    );
    let spec = pod_spec();
    let container = named(&spec["containers"], "sluice");
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            container_port(container, &get["port"]),
            admin_port,
            "{probe} must go to the admin listener"
        );
    }

    let annotations = &resource("deployment.yaml", "Deployment", "sluice")["spec"]["template"]["metadata"]
        ["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin_port.to_string().as_str())
    );

    // The ingress Service reaches the public listener.
    let (_, public_port) = listen_port(&config, "ingress");
    let service = resource("service.yaml", "Service", "sluice");
    let target = &service["spec"]["ports"][0]["targetPort"];
    assert_eq!(container_port(container, target), public_port);
}

#[test]
fn the_termination_grace_period_outlasts_the_grace() {
    let spec = pod_spec();
    let container = named(&spec["containers"], "sluice");
    let grace = sluice::cli::parse_duration(&arg(container, "--grace")).unwrap();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    let pre_stop = Duration::from_secs(u64::try_from(pre_stop).unwrap());
    let period = number(
        &spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let period = Duration::from_secs(u64::try_from(period).unwrap());
    assert!(
        period > grace,
        "terminationGracePeriodSeconds {period:?} must exceed --grace {grace:?}"
    );
    assert!(
        period >= pre_stop + grace + COMMIT_MARGIN,
        "terminationGracePeriodSeconds {period:?} must cover the preStop sleep {pre_stop:?}, --grace {grace:?} and the final commit's {COMMIT_MARGIN:?}"
    );

    // A delivery attempt in flight at SIGTERM ends within the grace.
    let config = parse_config(&config_text());
    for trigger in config["triggers"].as_vec().into_iter().flatten() {
        let timeout = trigger["delivery"]["timeout"]
            .as_str()
            .map_or(Duration::from_secs(30), |t| {
                sluice::cli::parse_duration(t).unwrap()
            });
        assert!(
            timeout < grace,
            "trigger {:?}: delivery.timeout {timeout:?} must be shorter than --grace {grace:?}",
            trigger["name"]
        );
    }
}

#[test]
fn sluice_reads_the_config_map_it_mounts() {
    let spec = pod_spec();
    assert!(
        spec["initContainers"].is_badvalue(),
        "sluice reads the ConfigMap as it is: no init container"
    );
    let container = named(&spec["containers"], "sluice");
    let volume = spec["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .find(|volume| volume["configMap"]["name"].as_str().is_some())
        .expect("the Deployment mounts a ConfigMap");
    let mount = named(
        &container["volumeMounts"],
        text(&volume["name"], "the ConfigMap volume's name"),
    );
    assert_eq!(
        mount["readOnly"].as_bool(),
        Some(true),
        "the config is mounted read-only: {mount:?}"
    );
    let config = arg(container, "--config");
    let config = Path::new(&config);
    assert_eq!(
        config.parent(),
        Some(Path::new(text(&mount["mountPath"], "mountPath"))),
        "--config must name a file in the ConfigMap's mount"
    );
    let key = config
        .file_name()
        .and_then(|name| name.to_str())
        .expect("--config names a file");
    let map = text(&volume["configMap"]["name"], "the ConfigMap's name");
    assert!(
        resource("configmap.yaml", "ConfigMap", map)["data"][key]
            .as_str()
            .is_some(),
        "the ConfigMap {map} has no {key}, which --config names"
    );
}

#[test]
fn every_variable_the_config_reads_comes_from_a_secret() {
    let config = parse_config(&config_text());
    let client = &config["kafka"]["client"];
    for (key, var) in [
        ("sasl.username", "KAFKA_SASL_USERNAME"),
        ("sasl.password", "KAFKA_SASL_PASSWORD"),
    ] {
        assert_eq!(
            client[key]["env"].as_str(),
            Some(var),
            "kafka.client.{key} must be {{env: {var}}}, not written in the ConfigMap"
        );
    }
    let mut names = Vec::new();
    env_references(&config, &mut names);
    for expected in [
        "SLUICE_ADMIN_TOKEN",
        "SLUICE_INGRESS_TOKEN",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "the config must read {expected} from the environment: {names:?}"
        );
    }

    let spec = pod_spec();
    let container = named(&spec["containers"], "sluice");
    for name in &names {
        let var = named(&container["env"], name);
        let secret = &var["valueFrom"]["secretKeyRef"];
        let (Some(secret_name), Some(key)) = (secret["name"].as_str(), secret["key"].as_str())
        else {
            panic!("{name} must come from a Secret: {var:?}");
        };
        // The Secret's shape in secret.yaml has that key.
        assert!(
            resource("secret.yaml", "Secret", secret_name)["stringData"][key]
                .as_str()
                .is_some(),
            "{name}: the Secret {secret_name} in secret.yaml has no key {key}"
        );
    }
}

#[test]
fn sluice_accepts_the_config_with_the_variables_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config_text()).unwrap();
    let variables = [
        ("SLUICE_ADMIN_TOKEN", "dummy-admin-token-a1"),
        ("SLUICE_INGRESS_TOKEN", "dummy-ingress-token-b2"),
        ("KAFKA_SASL_USERNAME", "dummy-sasl-user-c3"),
        ("KAFKA_SASL_PASSWORD", "dummy-sasl-password-d4"),
    ];
    let validate = |without: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.arg("-c").arg(&path).arg("validate");
        for (name, value) in variables {
            if without == Some(name) {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        command.output().unwrap()
    };

    let output = validate(None);
    assert!(
        output.status.success(),
        "sluice refused the ConfigMap's config:\n{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("valid"), "{}", stdout(&output));

    // Without the SASL password sluice refuses to start (exit 64), naming the key and the
    // variable but no value.
    let output = validate(Some("KAFKA_SASL_PASSWORD"));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(64), "{err}");
    // A key with a dot in it may be written in brackets: kafka.client["sasl.password"].
    assert!(
        [
            "kafka.client.sasl.password",
            "kafka.client[\"sasl.password\"]"
        ]
        .iter()
        .any(|key| err.contains(key)),
        "{err}"
    );
    assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
    let out = stdout(&output);
    for (name, value) in variables {
        assert!(
            !err.contains(value) && !out.contains(value),
            "the value of {name} was shown:\n{out}{err}"
        );
    }
}
