"""The deployment files (Dockerfile, compose, Kubernetes, systemd, Grafana) parse and agree with
each other and with Herald: paths (/data, /config/herald.toml), the port (8080), the health path
and the environment variables."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from bot.config import ENV_OVERRIDES, config_from_dict, load_config
from bot.doctor import INVITE_PERMISSIONS
from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.ops import HEALTH_PATH, METRICS_PATH

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PORT = 8080
CONFIG_PATH = "/config/herald.toml"
DATA = "/data"
LISTEN = f"0.0.0.0:{PORT}"


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        op, _, args = line.strip().partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), args.strip()))
    return stages


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for op, args in stage:
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def instr(stage: list[tuple[str, str]], op: str) -> list[str]:
    return [args for o, args in stage if o == op]


def test_dockerfile_is_a_small_multi_stage_build_on_python_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    froms = [s[0][1] for s in stages]
    assert all(f.split()[0] == "python:3.12-slim" for f in froms), froms
    build, final = stages[0], stages[-1]
    assert re.search(r"\bAS build\b", froms[0], re.I)
    build_runs = " ".join(instr(build, "RUN"))
    assert "pip wheel" in build_runs and "pip install" in build_runs  # pip only: a wheel, then a venv
    assert not re.search(r"apt-get|apk ", build_runs + " ".join(instr(final, "RUN")))
    assert any("--from=build" in c for c in instr(final, "COPY"))


def test_dockerfile_runtime_contract():
    final = dockerfile_stages()[-1]
    env = env_of(final)
    assert env["HERALD_CONFIG"] == CONFIG_PATH
    assert env["HERALD_HTTP_LISTEN"] == LISTEN
    assert "HERALD_HTTP_LISTEN" in ENV_OVERRIDES and "HERALD_CONFIG" not in ENV_OVERRIDES
    [user] = instr(final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert DATA in json.loads(instr(final, "VOLUME")[0])
    assert instr(final, "EXPOSE") == [str(PORT)]
    assert json.loads(instr(final, "ENTRYPOINT")[0]) == ["herald"]
    assert json.loads(instr(final, "CMD")[0]) == ["run"]
    [health] = instr(final, "HEALTHCHECK")
    command = json.loads(health.split("CMD", 1)[1].strip())
    assert command[0] == "python" and "curl" not in health
    assert f"{HEALTH_PATH}'" in command[-1] and "HERALD_HTTP_LISTEN" in command[-1]
    compile(command[-1], "healthcheck", "exec")  # the one-liner is valid Python
    assert any("/app/examples/" in c for c in instr(final, "COPY"))


def test_dockerfile_sources_survive_dockerignore():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def excluded(path: str) -> bool:
        out = False
        for pat in patterns:
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            parts = path.split("/")
            if any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)) or \
                    fnmatch.fnmatch(path, pat):
                out = not neg
        return out

    sources = []
    for stage in dockerfile_stages():
        for args in instr(stage, "COPY"):
            if "--from" in args:
                continue
            sources += args.split()[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not excluded(src), f"{src} is excluded by .dockerignore"
        if (ROOT / src).is_dir():
            assert not excluded(f"{src}/__init__.py")
    assert excluded("examples/herald-example.db") and excluded(".git/config") and excluded("tests/test_ops.py")


def test_example_in_the_image_writes_its_database_to_data(tmp_path, monkeypatch):
    """The Dockerfile links the example's relative database path onto /data; the config loader
    follows the link, so the example runs with a read-only /app."""
    final = dockerfile_stages()[-1]
    links = [r for r in instr(final, "RUN") if "ln -s" in r]
    assert links and f"{DATA}/herald-example.db /app/examples/herald-example.db" in links[0]
    example = tomllib.loads((ROOT / "examples" / "herald.toml").read_text())
    assert example["storage"]["url"] == "sqlite:///herald-example.db"
    app, data = tmp_path / "app" / "examples", tmp_path / "data"
    app.mkdir(parents=True)
    data.mkdir()
    (app / "herald.toml").write_text((ROOT / "examples" / "herald.toml").read_text())
    (app / "herald-example.db").symlink_to(data / "herald-example.db")
    monkeypatch.delenv("HERALD_STORAGE_URL", raising=False)
    config = load_config(app / "herald.toml")
    assert config.storage_url() == f"sqlite:///{data / 'herald-example.db'}"


# --- the shared config and environment -----------------------------------------------------------


def example_config() -> dict:
    return tomllib.loads((DEPLOY / "herald.toml.example").read_text())


def test_deploy_config_is_valid_and_uses_the_volume_and_port():
    data = example_config()
    config = config_from_dict(data)
    assert config.storage.url == f"sqlite:///{DATA}/herald.db"
    assert config.http.listen == LISTEN
    assert config.discord.token_env == "DISCORD_TOKEN"
    assert config.polling.parse_workers == 1


def test_environment_overrides(tmp_path, monkeypatch):
    cfg = tmp_path / "herald.toml"
    cfg.write_text('[storage]\nurl = "sqlite:///here.db"\n')
    monkeypatch.delenv("HERALD_STORAGE_URL", raising=False)
    monkeypatch.delenv("HERALD_HTTP_LISTEN", raising=False)
    config = load_config(cfg)
    assert config.http.listen is None and config.storage_url() == f"sqlite:///{tmp_path / 'here.db'}"
    monkeypatch.setenv("HERALD_STORAGE_URL", "sqlite:////data/other.db")
    monkeypatch.setenv("HERALD_HTTP_LISTEN", LISTEN)
    config = load_config(cfg)
    assert config.storage_url() == "sqlite:////data/other.db" and config.http.listen == LISTEN
    monkeypatch.setenv("HERALD_HTTP_LISTEN", "eight-oh-eighty")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.problems[0].startswith("http.listen (from $HERALD_HTTP_LISTEN): expected")
    monkeypatch.setenv("HERALD_HTTP_LISTEN", "  ")  # empty: the file's value (none) stands
    assert load_config(cfg).http.listen is None


# --- compose --------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file(name: str) -> dict[str, str]:
    """KEY=VALUE lines, commented-out ones included (they document optional settings)."""
    out = {}
    for line in (DEPLOY / name).read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_compose_runs_herald_with_a_volume_the_config_and_the_env_file():
    doc = compose()
    herald = doc["services"]["herald"]
    assert herald["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / herald["build"]["context"] / herald["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    volumes = [v.split(":") for v in herald["volumes"]]
    data = [v for v in volumes if v[1] == DATA]
    assert data and data[0][0] in doc["volumes"]  # a named volume
    config = [v for v in volumes if v[1] == CONFIG_PATH]
    assert config and config[0][0] == "./herald.toml" and config[0][-1] == "ro"
    assert herald["env_file"] == "herald.env"
    assert herald["environment"]["HERALD_CONFIG"] == CONFIG_PATH
    assert herald["environment"]["HERALD_HTTP_LISTEN"] == LISTEN
    assert [p.rsplit(":", 1)[1] for p in herald["ports"]] == [str(PORT)]
    assert herald["read_only"] is True and "/tmp" in herald["tmpfs"]
    assert herald["stop_signal"] == "SIGTERM"
    env = env_file("herald.env.example")
    assert "DISCORD_TOKEN" in env and env["DISCORD_TOKEN"] == ""
    assert example_config()["discord"]["token_env"] == "DISCORD_TOKEN"


def test_compose_postgres_profile_matches_the_storage_url():
    doc = compose()
    pg = doc["services"]["postgres"]
    assert pg["profiles"] == ["postgres"]
    assert "profiles" not in doc["services"]["herald"]
    assert doc["services"]["herald"]["depends_on"]["postgres"]["required"] is False
    url = env_file("herald.env.example")["HERALD_STORAGE_URL"]
    assert "HERALD_STORAGE_URL" in ENV_OVERRIDES
    m = re.fullmatch(r"postgresql://(\w+):(\w+)@(\w+):5432/(\w+)", url)
    assert m, url
    user, password, host, db = m.groups()
    assert host == "postgres" and user == pg["environment"]["POSTGRES_USER"] and db == pg["environment"]["POSTGRES_DB"]
    assert pg["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-%s}" % password
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])


# --- Kubernetes -----------------------------------------------------------------------------------


def k8s_docs() -> dict[str, dict]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = {}
    for name in kust["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kust["resources"]) == files
    assert kust["images"][0]["name"] == "herald"


def test_deployment_is_one_sqlite_replica_locked_down():
    docs = k8s_docs()
    dep = docs["Deployment"]
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    final = dockerfile_stages()[-1]
    assert str(pod["securityContext"]["runAsUser"]) == instr(final, "USER")[0].split(":")[0]
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["args"] == json.loads(instr(final, "CMD")[0])
    res = c["resources"]
    mib = lambda v: int(v.rstrip("Mi"))  # noqa: E731
    assert mib(res["requests"]["memory"]) <= mib(res["limits"]["memory"])
    assert "cpu" in res["requests"] and "cpu" in res["limits"]
    assert "Measured" in (K8S / "deployment.yaml").read_text()  # the numbers behind the resources

    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[DATA]["name"]]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # writable /tmp on a read-only root
    config_dir = str(Path(CONFIG_PATH).parent)
    assert mounts[config_dir]["readOnly"] is True
    assert volumes[mounts[config_dir]["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]


def test_deployment_env_probes_and_service_agree():
    docs = k8s_docs()
    [c] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HERALD_CONFIG"]["value"] == CONFIG_PATH
    assert env["HERALD_HTTP_LISTEN"]["value"] == LISTEN
    token = env[example_config()["discord"]["token_env"]]["valueFrom"]["secretKeyRef"]
    secret = docs["Secret"]
    assert token["name"] == secret["metadata"]["name"] and token["key"] in secret["stringData"]
    [port] = c["ports"]
    assert port["containerPort"] == PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == HEALTH_PATH and get["port"] in (port["name"], PORT), probe
    svc = docs["Service"]
    assert svc["spec"]["ports"][0]["targetPort"] in (port["name"], PORT)
    assert svc["metadata"]["annotations"]["prometheus.io/path"] == METRICS_PATH
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == str(PORT)
    assert svc["spec"]["selector"].items() <= docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()


def test_configmap_carries_the_deploy_config():
    cm = k8s_docs()["ConfigMap"]
    assert Path(CONFIG_PATH).name in cm["data"]
    assert cm["data"]["herald.toml"] == (DEPLOY / "herald.toml.example").read_text()


# --- systemd ---------------------------------------------------------------------------------------


def unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in (DEPLOY / "systemd" / "herald.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, line
        current.setdefault(key, []).append(value)
    return sections


def test_systemd_unit_is_sandboxed_and_stops_cleanly():
    u = unit()
    assert set(u) == {"Unit", "Service", "Install"}
    s = {k: v[-1] for k, v in u["Service"].items()}
    exe, *args = s["ExecStart"].split()
    assert exe.startswith("/") and Path(exe).name == "herald" and args == ["run"]
    assert s["KillSignal"] == "SIGTERM" and int(s["TimeoutStopSec"]) >= 10
    assert s["EnvironmentFile"].startswith("/etc/herald/")
    assert s.get("DynamicUser") == "yes" or s.get("User")
    for key, want in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
                      "StateDirectory": "herald"}.items():
        assert s[key] == want, key
    assert "AF_UNIX" in s["RestrictAddressFamilies"]  # the parser pool's forkserver
    assert "@system-service" in u["Service"]["SystemCallFilter"]
    env = dict(e.split("=", 1) for e in u["Service"]["Environment"])
    assert env["HERALD_STORAGE_URL"] == "sqlite:////var/lib/herald/herald.db"  # inside StateDirectory
    assert env["HERALD_CONFIG"].startswith("/etc/herald/")
    assert env["HERALD_HTTP_LISTEN"].endswith(f":{PORT}")
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


# --- Grafana and the README ------------------------------------------------------------------------


def test_grafana_dashboard_uses_only_metrics_herald_exports():
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exported = set()
    for family in Metrics().registry.collect():
        exported |= {s.name for s in family.samples} | {family.name}
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bherald_[a-z_]+", target["expr"]))
    assert used and used <= exported, used - exported


def test_readme_deploy_section():
    text = (ROOT / "README.md").read_text()
    assert text.index("## Deploy") < text.index("## Development")
    deploy = text[text.index("## Deploy"):text.index("## Development")]
    for needle in ("docker compose up -d", "kubectl apply -k deploy/kubernetes", "deploy/systemd/herald.service",
                   HEALTH_PATH, METRICS_PATH, "herald doctor", "--log-format json", "applications.commands",
                   f"permissions={INVITE_PERMISSIONS}", "HERALD_HTTP_LISTEN", "HERALD_STORAGE_URL"):
        assert needle in deploy, needle
