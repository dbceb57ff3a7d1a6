"""Every kustomize overlay renders, validates offline against the Kubernetes schemas, and
keeps the promises of docs/contract.md §8 (probes, limits, non-root, drain budget, public paths,
topics, autoscaling bounds, network reach)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from contract.topics import DLQ, STREAMS, all_topics, topic_name
from core.settings import ENV_VARS, SETTINGS, Settings, from_mapping
from ingest.serve import make_server

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "production")
# The oldest Kubernetes the manifests target (preStop `sleep` needs 1.30+).
KUBERNETES_VERSION = "1.31"
# Custom resources: the bundled schemas do not know them; their shape is checked below.
CRD_KINDS = frozenset(
    {"KafkaTopic", "ScaledObject", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
)
# DATABASE_URL carries the database password.
SECRET_VARS = frozenset({"DATABASE_URL"} | {s.variable for s in SETTINGS if s.secret})
PUBLIC_PATHS = {("/webhooks", "Prefix"), ("/events", "Exact")}
# Commit, producer flush and pool close after the consumer's drain deadline.
CONSUMER_CLOSE_S = 5
# rc-sync runs alone: one pod, never scaled (its rate limit is per process).
SINGLE = "ingester-rc-sync"
# The console: one pod (it keeps its history in memory); its graceful shutdown
# (ingester/console/app.py).
CONSOLE = "ingester-console"
CONSOLE_GRACE_S = 5

Obj = dict[str, Any]


def _kubectl() -> str | None:
    return shutil.which("kubectl") or next(
        (p for p in ("/usr/bin/kubectl", "/usr/local/bin/kubectl") if Path(p).is_file()), None
    )


KUBECTL = _kubectl()
pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed (it renders the kustomize overlays); .ci/run installs it",
)


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[Obj, ...]:
    return render(request.param)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def config(objects: tuple[Obj, ...]) -> dict[str, str]:
    maps = [
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("ingester-config")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod spec) for every Deployment, Job and CronJob."""
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_renders_every_piece(objects: tuple[Obj, ...]) -> None:
    kinds = sorted(o["kind"] for o in objects)

    for kind, count in {
        "Namespace": 1,
        "Deployment": 4,
        "Service": 2,
        "Ingress": 1,
        "HorizontalPodAutoscaler": 1,
        "ScaledObject": 1,
        "PodDisruptionBudget": 2,
        "Job": 1,
        "CronJob": 1,
        "KafkaTopic": len(STREAMS) + 1,
        "ServiceMonitor": 1,
        "PodMonitor": 2,
        "PrometheusRule": 1,
    }.items():
        assert kinds.count(kind) == count, kind
    assert kinds.count("NetworkPolicy") >= 3


def test_core_objects_validate_against_the_kubernetes_schemas(objects: tuple[Obj, ...]) -> None:
    errors, unknown = [], set()
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(obj["kind"])
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")

    assert errors == []
    # Exactly the custom resources go unvalidated here, never a core kind.
    assert unknown == CRD_KINDS


def test_the_validator_is_strict() -> None:
    deployment = one(render("dev"), "Deployment", "ingester-ingest")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_namespaced_objects_share_the_overlay_namespace(objects: tuple[Obj, ...]) -> None:
    (namespace,) = (o["metadata"]["name"] for o in of_kind(objects, "Namespace"))
    placed = {
        o["metadata"].get("namespace")
        for o in objects
        if o["kind"] not in ("Namespace", "KafkaTopic")
    }

    assert placed == {namespace}
    # The Strimzi Topic Operator watches the Kafka cluster's namespace only.
    assert {o["metadata"]["namespace"] for o in of_kind(objects, "KafkaTopic")} == {"kafka"}


def test_config_holds_only_known_non_secret_settings(objects: tuple[Obj, ...]) -> None:
    data = config(objects)

    assert set(data) <= set(ENV_VARS), "unknown variable: no setting reads it"
    assert not set(data) & SECRET_VARS
    assert of_kind(objects, "Secret") == [], "secrets are created out of band, never committed"


def test_every_workload_is_locked_down(objects: tuple[Obj, ...]) -> None:
    for workload, pod in pod_templates(objects):
        where = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, where
        pod_security = pod.get("securityContext", {})
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"]:
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) != 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be an emptyDir"
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) >= {"cpu", "memory"}, where


def test_every_deployment_probes_healthz_and_readyz_on_a_declared_port(
    objects: tuple[Obj, ...],
) -> None:
    for deployment in of_kind(objects, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"] for p in container["ports"]}
            probes = {
                kind: container[kind]["httpGet"]
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            }
            assert probes["readinessProbe"]["path"] == "/readyz"
            assert probes["livenessProbe"]["path"] == "/healthz"
            assert {p["port"] for p in probes.values()} <= ports


def test_config_parses_as_settings(objects: tuple[Obj, ...]) -> None:
    settings = from_mapping(config(objects))

    assert settings.kafka_bootstrap_servers
    assert settings.kafka_idempotent_producer is True


def drain_seconds(settings: Settings) -> dict[str, float]:
    """How long each component may take from SIGTERM to exit, by its own configuration."""
    graceful = make_server(settings).config.timeout_graceful_shutdown
    assert graceful is not None
    return {
        # uvicorn lets in-flight requests finish (each waits at most PRODUCE_TIMEOUT_S for
        # Kafka, within the graceful period), then the lifespan flushes the producer.
        "ingester-ingest": graceful + settings.producer_flush_timeout_s,
        # The batch in flight gets SHUTDOWN_DEADLINE_S, then the final commit and closes.
        "ingester-consumers": settings.shutdown_deadline_s + CONSUMER_CLOSE_S,
        # The same for rc-sync's batch; then the consumer, HTTP client, pool and lock close.
        SINGLE: settings.shutdown_deadline_s + CONSUMER_CLOSE_S,
        # uvicorn's graceful shutdown, then a replay in progress is stopped and the clients
        # closed.
        CONSOLE: CONSOLE_GRACE_S + CONSUMER_CLOSE_S,
    }


def container_settings(objects: tuple[Obj, ...], container: Obj) -> Settings:
    """The settings a container starts with: the ConfigMap, under its own ``env`` values."""
    env = dict(config(objects))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return from_mapping(env)


def pre_stop_seconds(container: Obj) -> int:
    seconds: int = (
        container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    )
    return seconds


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("manifests", id="values in the manifests"),
        pytest.param("defaults", id="settings defaults"),
    ],
)
def test_termination_grace_outlasts_pre_stop_and_drain(
    objects: tuple[Obj, ...], source: str
) -> None:
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        settings = container_settings(objects, container) if source == "manifests" else Settings()
        budget = pre_stop_seconds(container) + drain_seconds(settings)[name]

        assert budget < pod["terminationGracePeriodSeconds"], (name, budget)

    # The load balancer needs a moment to stop routing to a terminating ingest pod.
    ingest = one(objects, "Deployment", "ingester-ingest")["spec"]["template"]["spec"]
    assert pre_stop_seconds(ingest["containers"][0]) >= 5


def test_ingress_exposes_only_webhooks_and_events(objects: tuple[Obj, ...]) -> None:
    (ingress,) = of_kind(objects, "Ingress")
    service = one(objects, "Service", "ingester-ingest")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]

    assert "defaultBackend" not in ingress["spec"]
    assert {(p["path"], p["pathType"]) for p in paths} == PUBLIC_PATHS
    for path in paths:
        assert path["backend"]["service"]["name"] == "ingester-ingest"
        assert path["backend"]["service"]["port"]["name"] in service_ports
    assert not any(word in p["path"] for p in paths for word in ("metrics", "healthz", "readyz"))


def test_services_and_budgets_select_their_pods(objects: tuple[Obj, ...]) -> None:
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(objects, "Deployment")
    }
    for obj in (*of_kind(objects, "Service"), *of_kind(objects, "PodDisruptionBudget")):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [name for name, labels in templates.items() if selects(selector, labels)]
        assert len(matched) == 1, f"{obj['kind']}/{obj['metadata']['name']} selects {matched}"


def test_autoscalers_own_the_replica_counts(objects: tuple[Obj, ...]) -> None:
    hpa = one(objects, "HorizontalPodAutoscaler", "ingester-ingest")
    scaled = one(objects, "ScaledObject", "ingester-consumers")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    single = deployments.pop(SINGLE)
    console = deployments.pop(CONSOLE)

    targets = {hpa["spec"]["scaleTargetRef"]["name"], scaled["spec"]["scaleTargetRef"]["name"]}
    assert targets == set(deployments)
    # rc-sync: exactly one pod, the old one gone before the new one starts.
    assert single["spec"]["replicas"] == 1
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    # The console: one process, which keeps its short history of samples.
    assert console["spec"]["replicas"] == 1
    # A replicas field would fight the autoscaler on every apply.
    assert all("replicas" not in d["spec"] for d in deployments.values())
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def topic_of(kafka_topic: Obj) -> str:
    name: str = kafka_topic["spec"].get("topicName", kafka_topic["metadata"]["name"])
    return name


def test_every_spec_topic_is_a_kafka_topic(objects: tuple[Obj, ...]) -> None:
    prefix = config(objects)["TOPIC_PREFIX"]
    topics = {topic_of(t): t for t in of_kind(objects, "KafkaTopic")}

    assert set(topics) == set(all_topics(prefix))
    for name, topic in topics.items():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        spec = topic["spec"]
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1, name
        assert spec["replicas"] == 3, name
        assert int(spec["config"]["min.insync.replicas"]) == 2, name
        assert int(spec["config"]["retention.ms"]) >= 24 * 3600 * 1000, name
    dlq_retention = int(topics[topic_name(prefix, DLQ)]["spec"]["config"]["retention.ms"])
    for stream in STREAMS:
        assert (
            int(topics[topic_name(prefix, stream)]["spec"]["config"]["retention.ms"])
            < dlq_retention
        )


def test_keda_scales_on_the_consumer_group_within_the_partitions(objects: tuple[Obj, ...]) -> None:
    settings = config(objects)
    scaled = one(objects, "ScaledObject", "ingester-consumers")
    partitions = {topic_of(t): t["spec"]["partitions"] for t in of_kind(objects, "KafkaTopic")}
    triggers = scaled["spec"]["triggers"]

    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert {t["type"] for t in triggers} == {"kafka"}
    watched = {t["metadata"]["topic"] for t in triggers}
    assert watched == {topic_name(settings["TOPIC_PREFIX"], s) for s in STREAMS}
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == settings["KAFKA_BOOTSTRAP_SERVERS"]
        assert meta["consumerGroup"] == settings["CONSUMER_GROUP"]
        assert int(meta["lagThreshold"]) > 0
    low, high = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert 1 <= low <= high <= min(partitions[t] for t in watched)


def test_monitors_scrape_metrics_on_declared_ports(objects: tuple[Obj, ...]) -> None:
    service = one(objects, "Service", "ingester-ingest")
    monitor = one(objects, "ServiceMonitor", "ingester-ingest")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }

    endpoints = list(monitor["spec"]["endpoints"])
    for name in ("ingester-consumers", SINGLE):
        pods = one(objects, "Deployment", name)["spec"]["template"]
        pod_monitor = one(objects, "PodMonitor", name)
        assert selects(pod_monitor["spec"]["selector"]["matchLabels"], pods["metadata"]["labels"])
        ports = {p["name"] for c in pods["spec"]["containers"] for p in c["ports"]}
        assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= ports
        endpoints += pod_monitor["spec"]["podMetricsEndpoints"]
    assert {e["path"] for e in endpoints} == {"/metrics"}


def test_prometheus_rule_deploys_the_rules_file(objects: tuple[Obj, ...]) -> None:
    (rule,) = of_kind(objects, "PrometheusRule")
    rules_file = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yaml").read_text())

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rules_file


def egress_namespaces(policy: Obj) -> set[str]:
    """The namespaces a policy lets its pods reach ("internet" for an address block)."""
    return {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        if "namespaceSelector" in peer
        else "internet"
        for rule in policy["spec"].get("egress", [])
        for peer in rule["to"]
    }


@pytest.mark.parametrize(
    ("component", "reach"),
    [
        pytest.param("ingest", {"kafka", "kube-system"}, id="ingest: Kafka and DNS"),
        pytest.param("consumers", {"kafka", "postgres", "kube-system"}, id="consumers: +Postgres"),
        pytest.param("migrate", {"postgres", "kube-system"}, id="migrate: Postgres and DNS"),
        pytest.param("inbox-prune", {"postgres", "kube-system"}, id="prune: Postgres and DNS"),
        pytest.param("console", {"kafka", "postgres", "kube-system"}, id="console: all three"),
        pytest.param(
            "rc-sync",
            {"kafka", "postgres", "kube-system", "internet"},
            id="rc-sync: consumers' + RevenueCat",
        ),
    ],
)
def test_network_policies_limit_each_component(component: str, reach: set[str]) -> None:
    for overlay in OVERLAYS:
        objects = render(overlay)
        policies = of_kind(objects, "NetworkPolicy")
        labels = {
            "app.kubernetes.io/name": "webhook-ingester",
            "app.kubernetes.io/component": component,
        }
        applying = [
            p for p in policies if selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
        ]

        assert applying, f"no policy selects {component}"
        assert all(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in applying)
        assert set().union(*(egress_namespaces(p) for p in applying)) == reach
        for policy in applying:
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: egress without ports"


# Never reachable through rc-sync's internet egress: pod, service and VPC addresses, the
# cloud metadata service, loopback.
INSIDE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")


def test_rc_sync_reaches_the_internet_on_https_only_and_nothing_inside() -> None:
    for overlay in OVERLAYS:
        policy = one(render(overlay), "NetworkPolicy", SINGLE)
        blocks = [
            (rule, peer["ipBlock"])
            for rule in policy["spec"]["egress"]
            for peer in rule["to"]
            if "ipBlock" in peer
        ]

        assert blocks
        for rule, block in blocks:
            assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]
            if block["cidr"] == "0.0.0.0/0":
                assert set(INSIDE) <= set(block["except"])
            else:
                assert block["cidr"] == "::/0"
                assert {"fc00::/7", "fe80::/10"} <= set(block["except"])


def test_images_are_the_published_image_with_a_pinned_tag(objects: tuple[Obj, ...]) -> None:
    images = {c["image"] for _, pod in pod_templates(objects) for c in pod["containers"]}

    assert len(images) == 1
    (image,) = images
    repository, _, tag = image.rpartition(":")
    assert repository == "ghcr.io/example/webhook-ingester"
    assert tag and tag != "latest"


def test_production_runs_more_and_spreads_across_zones() -> None:
    dev, prod = render("dev"), render("production")

    assert config(dev)["ENVIRONMENT"] == "dev"
    assert config(prod)["ENVIRONMENT"] == "production"
    for kind, name, field in (
        ("HorizontalPodAutoscaler", "ingester-ingest", "minReplicas"),
        ("HorizontalPodAutoscaler", "ingester-ingest", "maxReplicas"),
        ("ScaledObject", "ingester-consumers", "minReplicaCount"),
        ("ScaledObject", "ingester-consumers", "maxReplicaCount"),
    ):
        assert one(prod, kind, name)["spec"][field] > one(dev, kind, name)["spec"][field], field
    assert one(prod, "HorizontalPodAutoscaler", "ingester-ingest")["spec"]["minReplicas"] >= 2
    for deployment in of_kind(prod, "Deployment"):
        if deployment["metadata"]["name"] in (SINGLE, CONSOLE):
            continue  # one pod: nothing to spread
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        zone = [c for c in spread if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone and zone[0]["whenUnsatisfiable"] == "DoNotSchedule"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(zone[0]["labelSelector"]["matchLabels"], labels)


def test_each_workload_runs_its_verb_with_only_its_secret(objects: tuple[Obj, ...]) -> None:
    expected = {
        "ingester-ingest": (["serve"], {"ingester-webhooks"}),
        "ingester-consumers": (["consume"], {"ingester-database"}),
        "ingester-migrate": (["migrate"], {"ingester-database"}),
        "ingester-inbox-prune": (["inbox", "prune"], {"ingester-database"}),
        SINGLE: (["rc-sync"], {"ingester-database", "ingester-revenuecat-api"}),
        "ingester-console": (["console"], {"ingester-database", "ingester-console"}),
    }
    seen = {}
    for workload, pod in pod_templates(objects):
        (container,) = pod["containers"]
        secrets = {e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e}
        seen[workload["metadata"]["name"]] = (container["args"], secrets)

    assert seen == expected


def test_the_deploy_guide_names_every_secret_and_key(objects: tuple[Obj, ...]) -> None:
    guide = (ROOT / "docs" / "deploying.md").read_text()
    referenced = {
        e["secretRef"]["name"]
        for _, pod in pod_templates(objects)
        for c in pod["containers"]
        for e in c.get("envFrom", [])
        if "secretRef" in e
    }

    assert referenced
    for name in sorted(referenced | SECRET_VARS):
        assert f"`{name}`" in guide, f"docs/deploying.md does not document {name}"


def test_the_console_is_reached_only_by_port_forward(objects: tuple[Obj, ...]) -> None:
    service = one(objects, "Service", "ingester-console")
    policy = one(objects, "NetworkPolicy", "ingester-console")
    (container,) = one(objects, "Deployment", "ingester-console")["spec"]["template"]["spec"][
        "containers"
    ]
    settings = container_settings(objects, container)

    assert service["spec"]["type"] == "ClusterIP"
    assert not any(
        p["backend"]["service"]["name"] == "ingester-console"
        for ingress in of_kind(objects, "Ingress")
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    )
    # Ingress is a policy type with no rule: no pod may connect.
    assert "Ingress" in policy["spec"]["policyTypes"] and not policy["spec"].get("ingress")
    (port,) = container["ports"]
    assert port["containerPort"] == settings.console_port
    assert settings.console_host == "0.0.0.0"  # the kubelet probes the pod's address
