"""The deploy assets agree with the code: schemas, CLI, settings, metric names.

No Docker engine or cluster exists here, so each file is checked offline: compose against the
Compose Specification, k8s against the Kubernetes schemas (kubernetes-validate), the workflow by
actionlint, PromQL by a parser, and every command, variable and metric name against what the
project's processes really accept and define. (promtool checks the Prometheus files in .ci/run.)
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import crossplane
import dockerfile
import kubernetes_validate
import promql_parser
import pytest
import typer
import yaml
from prometheus_client import REGISTRY
from typer.core import TyperGroup
from typer.exceptions import TyperException
from typer.main import get_command

from ops.cli import app as cli_app
from ops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
K8S = REPO / "ops" / "k8s"
OBSERVABILITY = K8S / "observability"
DEPLOY = REPO / "ops" / "deploy"
PROMETHEUS = REPO / "ops" / "deploy" / "prometheus"
DASHBOARD = REPO / "ops" / "deploy" / "grafana" / "dashboards" / "taskledger.json"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
BIN = Path(sys.executable).parent
# The oldest Kubernetes the manifests promise to work on (preStop `sleep` needs 1.30).
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PACKAGES = ("domain", "commands", "queries", "projections", "consumers", "ops")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- the CLI and the settings -------------------------------------------------------------


def parse_cli(argv: Sequence[str]) -> Any:
    """Parse argv as `taskledger` would (typer's click context), raising what the CLI raises
    for an unknown flag or a refused value; an unknown command fails the assertion."""
    command: Any = get_command(cli_app)
    parent: typer.Context | None = None
    rest = list(argv)
    name = "taskledger"
    while isinstance(command, TyperGroup):
        assert rest, f"{argv}: a command group needs a sub-command"
        parent = typer.Context(command, info_name=name, parent=parent)
        name = rest.pop(0)
        sub = command.get_command(parent, name)
        assert sub is not None, f"{argv}: no command {name!r} in `{parent.command_path}`"
        command = sub
    return command.make_context(name, rest, parent=parent)


def test_parse_cli_refuses_what_the_cli_refuses() -> None:
    assert parse_cli(["serve", "api", "--routes", "auth"]).params["routes"] == "auth"
    with pytest.raises(TyperException, match="everything"):
        parse_cli(["serve", "api", "--routes", "everything"])
    with pytest.raises(TyperException, match="no-such-flag"):
        parse_cli(["serve", "api", "--no-such-flag"])
    with pytest.raises(AssertionError, match="nothing"):
        parse_cli(["serve", "nothing"])


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: object) -> str:
    """Compose's ${VAR:-default}, taking the default: what `docker compose up` uses unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def check_settings(env: Mapping[str, str], where: str) -> None:
    """Every TASKLEDGER_* variable is a setting, and together they make valid Settings."""
    fields = set(Settings.model_fields)
    values: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("TASKLEDGER_"):
            continue
        field = name.removeprefix("TASKLEDGER_").lower()
        assert field in fields, f"{where}: {name} is not a setting (ops/settings.py)"
        values[field] = value
    Settings.model_validate(values)


# --- compose -------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE)
    return loaded


def our_services() -> Iterator[tuple[str, dict[str, Any]]]:
    """The services that run the taskledger image (built from the Dockerfile)."""
    for name, service in compose()["services"].items():
        if "build" in service:
            yield name, service


def test_compose_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_spec_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = dict(compose())
    broken["services"] = {
        **compose()["services"],
        "api-auth": {
            **compose()["services"]["api-auth"],
            "depends_on": {"redis": {"condition": "x"}},
        },
    }
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_compose_has_the_whole_production_topology() -> None:
    services = compose()["services"]
    for name in (
        "postgres",
        "redis",
        "mongo1",
        "mongo2",
        "mongo3",
        "mongo-init",
        "mailpit",
        "prometheus",
        "grafana",
        "projector",
        "mailer",
        "loki",
        "alloy",
        "otel-collector",
        "tempo",
    ):
        assert name in services, f"compose.yaml has no {name}"
    api = {name: s for name, s in our_services() if s["command"][:2] == ["serve", "api"]}
    routes = {parse_cli(s["command"]).params["routes"] for s in api.values()}
    assert {"auth", "tasks"} <= routes, "the API is not split into auth and task services"
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in api.values()) >= 2
    mongo_init = services["mongo-init"]
    assert (REPO / mongo_init["volumes"][0].split(":")[0]).is_file()


def test_every_compose_command_is_a_real_taskledger_command() -> None:
    services = dict(our_services())
    assert {"api-auth", "api-tasks", "projector", "mailer"} <= set(services)
    for service in services.values():
        parse_cli(service["command"])  # raises for an unknown command or a refused flag


def test_every_compose_taskledger_variable_is_a_setting() -> None:
    for name, service in our_services():
        env = {k: interpolate(v) for k, v in service["environment"].items()}
        assert env.get("TASKLEDGER_EVENT_STORE_URL", "").startswith("postgresql://"), name
        check_settings(env, f"compose service {name}")


# Distroless images (no shell, no wget): no check can run inside them; they say so explicitly.
NO_SHELL_IMAGES = {"loki", "otel-collector", "tempo"}


def test_compose_dependencies_exist_and_have_health_checks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                check = services[dependency].get("healthcheck", {"disable": True})
                assert not check.get("disable"), f"{dependency} has no healthcheck"
        if service.get("restart") == "no":  # one-shots (mongo-init, migrate) just exit
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        disabled = service["healthcheck"].get("disable", False)
        assert disabled == (name in NO_SHELL_IMAGES), f"{name}: healthcheck disabled?"


def test_the_worker_healthchecks_and_scrapes_use_the_ports_the_workers_serve() -> None:
    scrape = load_yaml(PROMETHEUS / "prometheus.yml")
    targets = {
        name: config["port"]
        for job in scrape["scrape_configs"]
        for config in job.get("dns_sd_configs", [])
        for name in config["names"]
    }
    for name, service in our_services():
        if service.get("restart") == "no":
            continue  # a one-shot serves nothing
        params = parse_cli(service["command"]).params
        port = params.get("metrics_port") or params.get("port")
        assert targets.get(name) == port, f"Prometheus scrapes {name} on the wrong port"
        assert str(port) in " ".join(service["healthcheck"]["test"])


# --- Dockerfile, nginx ----------------------------------------------------------------------


def test_the_image_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    commands = dockerfile.parse_file(str(REPO / "Dockerfile"))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) >= 2
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in commands
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    base = interpolate(stages[-1].value[0]).replace("$" + "{PYTHON_IMAGE}", "")
    base = args.get("PYTHON_IMAGE", base) if "PYTHON_IMAGE" in stages[-1].value[0] else base
    assert base.startswith("python:3.11-slim")
    final = commands[commands.index(stages[-1]) :]
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert any(c.cmd == "HEALTHCHECK" for c in final)
    (entrypoint,) = [c.value for c in final if c.cmd == "ENTRYPOINT"]
    assert list(entrypoint) == ["taskledger"]
    (cmd,) = [c.value for c in final if c.cmd == "CMD"]
    parse_cli(list(cmd))
    for copy in (c for c in commands if c.cmd == "COPY" and not c.flags):
        for source in copy.value[:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_the_gateway_config_parses_and_routes_to_compose_services() -> None:
    parsed = crossplane.parse(str(REPO / "ops" / "deploy" / "nginx" / "nginx.conf"))
    assert parsed["status"] == "ok", parsed["errors"]
    text = (REPO / "ops" / "deploy" / "nginx" / "nginx.conf").read_text()
    for host in re.findall(r"http://([a-z0-9-]+):\d+", text):
        assert host in compose()["services"], f"nginx routes to unknown service {host}"


# --- Kubernetes -----------------------------------------------------------------------------


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            yield path, doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for path, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 10


def test_the_k8s_schema_check_catches_a_broken_manifest() -> None:
    deployment = next(doc for _, doc in manifests() if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    for root in (K8S, OBSERVABILITY):
        kustomization = load_yaml(root / "kustomization.yaml")
        listed = set(kustomization["resources"])
        on_disk = {p.name for p in root.glob("*.yaml")} - {
            "kustomization.yaml",
            "secret.example.yaml",
        }
        bases = {p.parent.name for p in root.glob("*/kustomization.yaml")}
        assert listed == on_disk | bases, root
    assert "observability" in load_yaml(K8S / "kustomization.yaml")["resources"]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def test_k8s_has_deployments_services_hpas_and_budgets_for_the_split_api() -> None:
    deployments = by_kind("Deployment")
    assert {"api-auth", "api-tasks", "projector", "mailer"} <= set(deployments)
    hpas = {
        d["spec"]["scaleTargetRef"]["name"] for d in by_kind("HorizontalPodAutoscaler").values()
    }
    assert {"api-auth", "api-tasks", "mailer"} <= hpas <= set(deployments)
    labels_of = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    def selects(selector: Mapping[str, str]) -> set[str]:
        return {n for n, labels in labels_of.items() if selector.items() <= labels.items()}

    for name, service in by_kind("Service").items():
        assert selects(service["spec"]["selector"]) == {name}
    budgets = by_kind("PodDisruptionBudget")
    assert {"api-auth", "api-tasks"} <= set(budgets)
    for budget in budgets.values():
        assert selects(budget["spec"]["selector"]["matchLabels"])
    routes = {
        parse_cli(deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]).params[
            "routes"
        ]
        for name in ("api-auth", "api-tasks")
    }
    assert routes == {"auth", "tasks"}


def test_k8s_containers_run_real_commands_with_probes_on_their_own_ports() -> None:
    secret = by_kind("Secret")["taskledger-secrets"]
    configmaps = by_kind("ConfigMap")
    for name, deployment in by_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            parse_cli(container["args"])
            ports = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, f"{name} has no {probe}"
                assert container[probe]["httpGet"]["port"] in ports
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                env.update(configmaps[source["configMapRef"]["name"]]["data"])
            for variable in container.get("env", []):
                ref = variable["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "taskledger-secrets"
                env[variable["name"]] = secret["stringData"][ref["key"]]
            check_settings(env, f"k8s deployment {name}")
        assert pod["securityContext"]["runAsNonRoot"] is True


# --- Logs and traces ------------------------------------------------------------------------


def observability_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(OBSERVABILITY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in load_all(path):
                yield path, doc


def observability(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in observability_manifests() if d["kind"] == kind}


def listen_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_logs_and_traces_manifests_validate_against_the_kubernetes_schemas(
    version: str,
) -> None:
    kinds = set()
    for path, doc in observability_manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        kinds.add(doc["kind"])
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "RoleBinding"} <= kinds


def test_every_file_compose_mounts_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_every_process_exports_spans_to_the_collector_which_forwards_them_to_tempo() -> None:
    collector = load_yaml(DEPLOY / "otel-collector" / "config.yaml")
    otlp_http = listen_port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    k8s_env = by_kind("ConfigMap")["taskledger-config"]["data"]
    for where, env in [*((n, s["environment"]) for n, s in our_services()), ("k8s", k8s_env)]:
        assert env["TASKLEDGER_OTEL_ENABLED"] == "true", where
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{otlp_http}", where
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in collector[kind], f"undefined {kind[:-1]} {component}"
    for extension in collector["service"]["extensions"]:
        assert extension in collector["extensions"]
    tempo = load_yaml(DEPLOY / "tempo" / "tempo.yaml")
    tempo_otlp = listen_port(
        tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    )
    (exporter,) = collector["exporters"].values()
    assert exporter["endpoint"] == f"tempo:{tempo_otlp}"
    assert f"{tempo_otlp}" in compose()["services"]["tempo"]["expose"]
    services = observability("Service")
    assert tempo_otlp in {p["port"] for p in services["tempo"]["spec"]["ports"]}
    assert otlp_http in {p["port"] for p in services["otel-collector"]["spec"]["ports"]}


def alloy_configs() -> dict[str, str]:
    k8s = observability("ConfigMap")["alloy-config"]["data"]["config.alloy"]
    return {"compose": (DEPLOY / "alloy" / "config.alloy").read_text(), "k8s": k8s}


def test_alloy_ships_every_container_s_lines_to_loki() -> None:
    loki_port = load_yaml(DEPLOY / "loki" / "loki.yaml")["server"]["http_listen_port"]
    for where, text in alloy_configs().items():
        assert re.findall(r'url\s*=\s*"([^"]+)"', text) == [
            f"http://loki:{loki_port}/loki/api/v1/push"
        ], where
        assert text.count("{") == text.count("}"), where
        declared = set(re.findall(r'^([a-z_.]+) "([a-z_]+)" \{', text, re.MULTILINE))
        used = re.findall(
            r"= \[?([a-z_]+\.[a-z_.]+)\.([a-z_]+)\.(?:receiver|targets|rules|output)", text
        )
        assert used, where
        for component in used:
            assert component in declared, f"{where}: {component} is not declared"
        # The label Grafana's trace-to-logs query selects.
        assert 'values = { system = "taskledger" }' in text, where
    mounts = compose()["services"]["alloy"]["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in mounts


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    folder = DEPLOY / "grafana" / "provisioning" / "datasources"
    return {
        source["uid"]: source
        for path in sorted(folder.glob("*.yml"))
        for source in load_yaml(path)["datasources"]
    }


def test_grafana_links_a_log_line_to_its_trace_and_a_trace_to_its_logs() -> None:
    from consumers.event_context import bind_event_context
    from domain.meta import meta
    from ops.logs import line_formatter

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with bind_event_context(meta(None, "req-42", f"00-{trace_id}-00f067aa0ba902b7-01")):
        record = logging.LogRecord("taskledger.mail", logging.INFO, __file__, 1, "sent", (), None)
        line = line_formatter(json_lines=True).format(record)

    sources = provisioned_datasources()
    loki, tempo = sources["loki"], sources["tempo"]
    assert (loki["type"], tempo["type"]) == ("loki", "tempo")
    fields = {field["name"]: field for field in loki["jsonData"]["derivedFields"]}
    # Grafana's regexes (JavaScript) find the ids in a real line of ours.
    assert re.findall(fields["trace_id"]["matcherRegex"], line) == [trace_id], line
    assert fields["trace_id"]["datasourceUid"] == "tempo"
    assert re.findall(fields["correlation_id"]["matcherRegex"], line) == ["req-42"], line
    for field in fields.values():
        assert field["datasourceUid"] in sources
        assert "$${__value.raw}" in field["url"]  # $$: not an environment variable
    to_logs = tempo["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert to_logs["query"] == '{system="taskledger"} |= "$${__trace.traceId}"'
    assert tempo["jsonData"]["serviceMap"]["datasourceUid"] in sources
    loki_port = load_yaml(DEPLOY / "loki" / "loki.yaml")["server"]["http_listen_port"]
    tempo_port = load_yaml(DEPLOY / "tempo" / "tempo.yaml")["server"]["http_listen_port"]
    assert loki["url"] == f"http://loki:{loki_port}"
    assert tempo["url"] == f"http://tempo:{tempo_port}"
    depends = compose()["services"]["grafana"]["depends_on"]
    assert {"loki", "tempo", "prometheus"} <= set(depends)


def test_the_k8s_copies_of_the_configs_are_the_compose_ones() -> None:
    configmaps = observability("ConfigMap")
    for name, key, path in [
        ("loki-config", "loki.yaml", DEPLOY / "loki" / "loki.yaml"),
        ("tempo-config", "tempo.yaml", DEPLOY / "tempo" / "tempo.yaml"),
        ("otel-collector-config", "config.yaml", DEPLOY / "otel-collector" / "config.yaml"),
    ]:
        assert configmaps[name]["data"][key] == path.read_text(), name
    datasources = configmaps["grafana-datasources-logs-and-traces"]
    assert datasources["metadata"]["labels"]["grafana_datasource"] == "1"
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources" / "logs-and-traces.yml"
    in_cluster = datasources["data"]["logs-and-traces.yml"]
    assert in_cluster.replace(".taskledger.svc", "") == provisioning.read_text()
    # Each workload mounts a config map that exists and is selected by its own Service.
    services = observability("Service")
    for kind in ("StatefulSet", "Deployment"):
        for name, workload in observability(kind).items():
            pod = workload["spec"]["template"]
            for volume in pod["spec"]["volumes"]:
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in configmaps, name
            if name in services:
                selector = services[name]["spec"]["selector"]
                assert selector.items() <= pod["metadata"]["labels"].items(), name
            for container in pod["spec"]["containers"]:
                ports = {p["name"] for p in container["ports"]}
                for probe in ("livenessProbe", "readinessProbe"):
                    assert container[probe]["httpGet"]["port"] in ports, name
    (binding,) = observability("RoleBinding").values()
    assert (
        binding["subjects"][0]["name"]
        == observability("Deployment")["alloy"]["spec"]["template"]["spec"]["serviceAccountName"]
    )


# --- Prometheus, Grafana ----------------------------------------------------------------------


@cache
def defined_metrics() -> frozenset[str]:
    """Every sample name the code's metrics produce (from each package's metrics modules)."""
    for package in PACKAGES:
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, package + "."):
            if module.name.rsplit(".", 1)[-1] == "metrics":
                importlib.import_module(module.name)
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
    }
    names = {"up"}  # Prometheus's own, per target
    for family in REGISTRY.collect():
        if family.name.startswith("taskledger_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return frozenset(names)


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects; the parser prints every selector as name{...}."""
    return set(_SELECTOR.findall(str(promql_parser.parse(expr))))


def test_metric_names_are_read_from_parsed_promql() -> None:
    expr = 'sum by (le) (rate(a_total{x="y"}[5m])) / on() group_left b + histogram_quantile(0.9, c)'
    assert metric_names(expr) == {"a_total", "b", "c"}
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's only error type
        promql_parser.parse("sum(rate(a[5m])")


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_cover_the_operational_stories() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    for needed in (
        "ProjectionLagging",
        "ProjectionParkedEvents",
        "MailDeadLettersGrowing",
        "HighServerErrorRate",
        "DependencyNotReady",
    ):
        assert needed in names
    tested = load_yaml(PROMETHEUS / "alerts.test.yml")
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert names <= fired, f"alerts without a promtool test that fires them: {names - fired}"


def test_every_alert_names_only_metrics_the_code_defines() -> None:
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - defined_metrics()
        assert not unknown, f"alert {rule['alert']} uses undefined metrics {unknown}"
        assert rule["labels"]["severity"] in ("warning", "critical")


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_every_dashboard_panel_queries_metrics_the_code_defines() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    provisioned = load_yaml(
        REPO / "ops" / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    )
    uid = provisioned["datasources"][0]["uid"]
    shown: set[str] = set()
    for title, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names <= defined_metrics(), f"panel {title!r}: {names - defined_metrics()}"
        shown |= names
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid
    for needed in (
        "taskledger_projection_lag_events",
        "taskledger_projection_lag_seconds",
        "taskledger_projection_parked_events",
        "taskledger_mail_dead_lettered_total",
        "taskledger_dependency_ready",
        "taskledger_http_request_duration_seconds_count",
    ):
        assert needed in shown, f"the dashboard does not show {needed}"


# --- GitHub Actions ---------------------------------------------------------------------------


def test_the_workflow_passes_actionlint_and_the_workflow_schema() -> None:
    lint = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", str(WORKFLOW.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("needs: [lint, types, test]", "needs: [lnt]"))
    lint = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", ".github/workflows/ci.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode != 0
    assert "lnt" in lint.stdout


def test_the_workflow_lints_types_tests_with_services_builds_and_deploys() -> None:
    jobs = load_yaml(WORKFLOW)["jobs"]
    assert {"lint", "types", "test", "image", "deploy-staging"} <= set(jobs)
    assert {"postgres", "redis"} <= set(jobs["test"]["services"])
    assert "refs/heads/main" in jobs["deploy-staging"]["if"]


# --- schema: one owner, before anything serves ------------------------------------------------


def _serves_the_event_store(command: list[str]) -> bool:
    return command[:2] in (["serve", "api"], ["serve", "projector"])


def test_compose_migrates_once_before_any_event_store_user_starts() -> None:
    services = dict(our_services())
    migrate = services["migrate"]
    assert parse_cli(migrate["command"]).command.name == "migrate"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    def after_migrate(name: str) -> bool:
        needs = services[name].get("depends_on", {})
        if needs.get("migrate", {}).get("condition") == "service_completed_successfully":
            return True
        return any(after_migrate(other) for other in needs if other in services)

    users = [n for n, s in services.items() if _serves_the_event_store(s["command"])]
    assert {"api-auth", "api-tasks", "projector"} <= set(users)
    for name in users:
        assert after_migrate(name), f"{name} may start before the schema is migrated"


def test_k8s_pods_that_use_the_event_store_migrate_first() -> None:
    secret = by_kind("Secret")["taskledger-secrets"]
    for name, deployment in by_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        if not _serves_the_event_store(pod["containers"][0]["args"]):
            continue
        [init] = pod["initContainers"]
        assert parse_cli(init["args"]).command.name == "migrate", name
        urls = [v for v in init["env"] if v["name"] == "TASKLEDGER_EVENT_STORE_URL"]
        ref = urls[0]["valueFrom"]["secretKeyRef"]
        assert secret["stringData"][ref["key"]].startswith("postgresql://"), name
