"""The deploy assets agree with the code: schemas, CLI, settings, metric names.

No Docker engine or cluster exists here, so each file is checked offline: compose against the
Compose Specification, k8s against the Kubernetes schemas (kubernetes-validate), the workflow by
actionlint, PromQL by a parser, and every command, variable and metric name against what the
project's processes really accept and define. (promtool checks the Prometheus files in .ci/run.)
"""

from __future__ import annotations

import importlib
import json
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


def test_compose_dependencies_exist_and_have_health_checks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
        if service.get("restart") != "no":  # one-shots (mongo-init, migrate) just exit
            assert "healthcheck" in service, f"{name} has no healthcheck"


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
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk


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
