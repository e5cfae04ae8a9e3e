"""`fleetcare up`'s whole loop: every worker as a child process, supervised (``cli.supervisor``:
restarted when it dies), stopped with us.

Workers run as the same commands an operator runs alone (`fleetcare ingest`, `score`,
`dispatch`, `webhooks`, `simulate`), each with the chosen services in its environment, so the
demo exercises exactly the production code paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.commands import apply_and_sync
from cli.supervisor import Child, Supervisor, watch
from fleetcare.commandline import fail, load_settings
from fleetcare.errors import FleetcareError
from fleetcare.settings import Settings, quick_start_settings
from simulators.schemas import simulate_args

# The customer `up` simulates its first models' training histories under: fleetcare's own,
# marked internal so that the operator's overview leaves it out.
TRAINING_FLEET = "history-lab"

if TYPE_CHECKING:
    from fleetcare.services import Services

log = logging.getLogger(__name__)


def child_env(database_url: str, mqtt_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every worker: the chosen services, the same data folder."""
    env = dict(os.environ)
    env.update(
        FLEETCARE_DATABASE_URL=database_url,
        FLEETCARE_MQTT_URL=mqtt_url,
        FLEETCARE_DATA_DIR=str(data_dir.resolve()),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --- first run: train a model per kind in parallel, with progress -------------------------------

# A lighter model than `models train`'s default, so a first run is quick; train and promote a
# fuller one later with `fleetcare models train --kind K`.
FIRST_RUN_TRAIN_ARGS = (
    "--param", "max_iter=80", "--param", "calibration_folds=3", "--risk-param", "max_iter=80",
    "--threads", "1",
)  # fmt: skip
_STEP = re.compile(r"^train (?P<kind>\S+): step (?P<done>\d+)/(?P<total>\d+) (?P<what>.*?) \(")
_DONE = re.compile(r"^model version \d+ \((?P<kind>\S+)\) trained in")


@dataclass
class Training:
    """A `fleetcare models train` child of one kind and what its log says so far."""

    kind: str
    child: Child
    started: float
    step: str = "starting"
    done: int = 0
    total: int = 7
    finished: float | None = None

    def refresh(self) -> None:
        """Read the newest step line of the child's log."""
        try:
            lines = self.child.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in reversed(lines):
            if _DONE.match(line):
                self.step, self.done = "done", self.total
                return
            m = _STEP.match(line)
            if m:
                self.step, self.done = m["what"], int(m["done"]) - 1
                self.total = max(self.total, int(m["total"]))
                return

    def describe(self, now: float) -> str:
        end = self.finished if self.finished is not None else now
        return f"{self.kind} {self.step} ({end - self.started:.0f} s)"


def start_training(supervisor: Supervisor, kinds: list[str]) -> list[Training]:
    """Start one trainer per kind at once, each on one native thread, logs in the log dir."""
    out = []
    for kind in kinds:
        # a previous run's log would be read as this run's progress
        (supervisor.log_dir / f"train-{kind}.log").unlink(missing_ok=True)
        child = supervisor.start(
            f"train-{kind}", "models", "train", "--kind", kind, *FIRST_RUN_TRAIN_ARGS
        )
        out.append(Training(kind, child, time.monotonic()))
    return out


def wait_for_training(
    supervisor: Supervisor,
    trainings: list[Training],
    echo: Callable[[str], None],
    *,
    interactive: bool,
    every_s: float = 10.0,
    poll_s: float = 0.5,
) -> None:
    """Wait for every trainer; show a progress bar per kind on a terminal, otherwise a
    progress line every ``every_s`` seconds and one per finished kind. Raise when one fails.
    Finished trainers leave the supervisor's children (they are not workers)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=not interactive
    )
    tasks = {t.kind: bar.add_task(f"training {t.kind}", total=t.total) for t in trainings}
    last_line = time.monotonic()
    with bar:
        while True:
            now = time.monotonic()
            for t in trainings:
                if t.finished is not None:
                    continue
                t.refresh()
                code = t.child.proc.poll()
                if code is not None:
                    t.refresh()
                    t.finished = now
                    supervisor.children.remove(t.child)
                    if code != 0:
                        raise RuntimeError(
                            f"training {t.kind} failed with exit code {code}; see "
                            f"{t.child.log_path}"
                        )
                    t.step, t.done = "done", t.total
                    echo(f"fleetcare: {t.kind} model trained in {now - t.started:.0f} s")
                bar.update(tasks[t.kind], completed=t.done, total=t.total,
                           description=f"training {t.kind}: {t.step}")  # fmt: skip
            if all(t.finished is not None for t in trainings):
                return
            if not interactive and now - last_line >= every_s:
                last_line = now
                echo("fleetcare: training " + "; ".join(t.describe(now) for t in trainings))
            time.sleep(poll_s)


def follow_training(
    supervisor: Supervisor,
    trainings: list[Training],
    echo: Callable[[str], None],
    *,
    interactive: bool,
    every_s: float = 10.0,
) -> Callable[[], None]:
    """Show the trainers' progress from now on (while the rest of the loop starts), in a
    thread; return the function that waits for them and raises when one failed."""
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            wait_for_training(supervisor, trainings, echo, interactive=interactive, every_s=every_s)
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=follow, name="training-progress", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failure:
            raise failure[0]

    return wait


# --- `fleetcare up`: the command -----------------------------------------------------------


def up(
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="API port")] = None,
    host: Annotated[str | None, typer.Option(help="API bind address")] = None,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="serve the API only: no workers, no simulation")
    ] = False,
    speedup: Annotated[
        float, typer.Option(min=1, max=1e7, help="simulated seconds per real second")
    ] = 20_000.0,
    history: Annotated[
        int, typer.Option(min=1, max=1000, help="lifetimes per kind to train on (first run)")
    ] = 30,
    fleet: Annotated[
        list[str] | None,
        typer.Option(
            "--fleet",
            help="KIND=COUNT: also simulate COUNT assets of a defined kind (e.g. one applied "
            "with `fleetcare kinds apply pump.yaml`) for customer own-fleet, by the generic "
            "degradation process (repeatable)",
        ),
    ] = None,
) -> None:
    """Run the whole loop on this machine: services, migrations, demo customers, simulated
    fleets, ingest, scoring, the policy, webhooks to a demo receiver, a technician, the API
    and dashboard.

    Uses FLEETCARE_DATABASE_URL / FLEETCARE_MQTT_URL when set; otherwise the local
    PostgreSQL and our own no-drop Mosquitto, or embedded ones. When no wear model is active
    yet, it first simulates histories and trains. Ctrl-C or SIGTERM stops everything.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from api.app import create_app
    from cli.demo import seed_demo, seed_demo_users
    from fleetcare.services import check_port_free, exit_on_sigterm, running_services
    from ingest.broker_sync import BrokerAccess
    from simulators.api_client import local_api_url

    extra_fleets = parse_fleets(fleet or [])
    if extra_fleets and api_only:
        raise fail("--fleet simulates a fleet in the loop: not with --api-only")
    settings = quick_start_settings(load_settings())
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    # links in invitations and resets point at this API unless FLEETCARE_PUBLIC_URL says else
    settings = settings.model_copy(update={"api_host": bind_host, "api_port": bind_port})
    exit_on_sigterm()
    try:
        check_port_free(bind_host, bind_port, "the API", "another fleetcare up? Stop it, or "
                        "choose another port: --port N or FLEETCARE_API_PORT")  # fmt: skip
        # our own Mosquitto takes only the registry's devices and the ingestor, each on its
        # own topics (the ACL); other brokers stay as configured
        access = BrokerAccess(settings.data_dir / "mosquitto-access", settings.topic_root)
        with (
            running_services(
                settings, broker_login=access.login(), check_database=True
            ) as services,
            contextlib.ExitStack() as workers,
        ):
            typer.echo(f"fleetcare: {services.describe()}")
            chosen, applied = apply_and_sync(services.database_url)
            typer.echo(f"fleetcare: storage path {chosen}; {len(applied)} migration(s) applied")
            if services.guarded_broker_pid is not None:
                stop_sync = threading.Event()
                workers.callback(stop_sync.set)
                access.keep_current(services.database_url, services.guarded_broker_pid, stop_sync)
            check_fleet_kinds(services.database_url, extra_fleets)
            demo = seed_demo(services.database_url, settings.data_dir) if settings.demo else None
            people = (
                seed_demo_users(services.database_url, settings.data_dir, settings)
                if settings.demo
                else []
            )
            base = f"http://{bind_host}:{bind_port}"
            if not api_only:
                api_url = local_api_url(bind_host, bind_port)
                receiver = _start_loop(
                    settings, services, workers, speedup, history, api_url, extra_fleets
                )
                typer.echo(f"fleetcare: demo webhook receiver on {receiver}")
                typer.echo(f"fleetcare: worker logs in {settings.data_dir.resolve() / 'logs'}")
            typer.echo(f"fleetcare: API on {base}  (docs {base}/docs, health {base}/healthz)")
            typer.echo(f"fleetcare: dashboard on {base}/dashboard")
            for email, password, role in people:
                typer.echo(
                    f"fleetcare: sign in at {base}/dashboard/login as {email}"
                    f" (password {password}; {role})"
                )
            if demo:
                typer.echo(f"fleetcare: demo keys (for machines) in {demo}")
            application = create_app(settings, services.database_url)
            uvicorn.run(
                application,
                host=bind_host,
                port=bind_port,
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=5,  # live dashboard streams never end by themselves
                # the loop's simulated people call the API every second: their access log goes
                # to a file like every worker's log, not over the terminal
                log_config=LOGGING_CONFIG if api_only else _access_log_to_file(settings),
            )
    except FleetcareError as exc:
        raise fail(exc.detail) from exc
    except RuntimeError as exc:
        raise fail(str(exc)) from exc
    except (KeyboardInterrupt, SystemExit):
        pass  # Ctrl-C or SIGTERM: everything started above has been stopped by now
    typer.echo("fleetcare: stopped")


# the customer whose simulated fleet `up --fleet KIND=COUNT` runs
OWN_FLEET = "own-fleet"
MAX_FLEET = 1000


def parse_fleets(items: list[str]) -> dict[str, int]:
    """``["pump=5", ...]`` → {kind: count}; a bad item fails with a one-line error."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        name, count = name.strip(), count.strip()
        if not sep or not name or not count.isdigit() or not 1 <= int(count) <= MAX_FLEET:
            raise fail(
                f"--fleet takes KIND=COUNT with COUNT 1..{MAX_FLEET}, e.g. pump=5; got {item!r}"
            )
        out[name] = out.get(name, 0) + int(count)
    return out


def check_fleet_kinds(database_url: str, fleets: dict[str, int]) -> None:
    """Every kind of ``--fleet`` is defined (NotFound names the known kinds)."""
    if not fleets:
        return
    from fleetcare.db import connect
    from kinds.service import get_kind

    with connect(database_url) as conn:
        for kind in fleets:
            get_kind(conn, kind)


def own_fleet_args(fleets: dict[str, int]) -> list[str]:
    """``fleetcare simulate`` arguments of the --fleet kinds: no built-in assets, each kind by
    the generic degradation process."""
    args = ["--customer", OWN_FLEET, *simulate_args({})]
    for kind, count in sorted(fleets.items()):
        args += ["--kind", f"{kind}={count}"]
    return args


def own_history_args(kinds: list[str], history: int) -> list[str]:
    """``fleetcare simulate`` arguments that write ``history`` lifetimes of each of ``kinds``
    (kinds of ``--fleet``, by the generic process) for the training customer."""
    args = ["--customer", TRAINING_FLEET, *simulate_args({})]
    for kind in sorted(kinds):
        args += ["--kind", f"{kind}=1"]
    return [*args, "--history", str(history), "--duration", "0"]


@dataclass(frozen=True)
class FirstRunPlan:
    """What `up` does before the loop so that every kind it simulates has a model."""

    train: list[str]  # kinds without an active model, trained in parallel
    built_in_history: bool  # simulate the built-in kinds' training histories first
    own_history: list[str]  # --fleet kinds whose training history is simulated first


def first_run_plan(
    active: Iterable[str], built_in: Iterable[str], own: Iterable[str], with_history: set[str]
) -> FirstRunPlan:
    """The kinds to train (built-in and ``--fleet`` ones without an active model), and the
    histories to simulate for them (kinds in ``with_history`` already have one)."""
    have = set(active)
    missing = [k for k in built_in if k not in have]
    own_missing = [k for k in sorted(set(own)) if k not in have and k not in missing]
    return FirstRunPlan(
        train=missing + own_missing,
        built_in_history=bool(missing) and not (with_history & set(built_in)),
        own_history=[k for k in own_missing if k not in with_history],
    )


def _access_log_to_file(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging, with the access log in ``<data dir>/logs/api-access.log``."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    log_dir = settings.data_dir.resolve() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"]["use_colors"] = False
    config["handlers"]["access"] = {
        "formatter": "access",
        "class": "logging.FileHandler",
        "filename": str(log_dir / "api-access.log"),
    }
    return config


def _start_loop(
    settings: Settings,
    services: Services,
    workers: contextlib.ExitStack,
    speedup: float,
    history: int,
    api_url: str,
    extra_fleets: dict[str, int] | None = None,
) -> str:
    """Train when needed, register the demo fleets, then start every worker; return the
    demo receiver's URL. Everything started is stopped when ``workers`` closes. The simulated
    people (technicians, the courier) act through the API at ``api_url`` with their keys;
    until it listens they retry."""
    from cli.demo import DEMO_FLEETS, DEMO_HISTORY_FLEET, DEMO_KINDS, loop_keys, prepare_loop
    from fleet import repository as fleet_repo
    from fleet import service as fleet_service
    from fleetcare.clock import SystemClock
    from fleetcare.db import connect
    from fleetcare.services import free_port, wait_for_port
    from models.repository import active_version_ids
    from simulators.api_client import ProductAPI
    from simulators.courier import Courier
    from simulators.desks import desks_for
    from simulators.position_feed import PositionFeed

    data_dir = settings.data_dir.resolve()
    env = child_env(
        services.database_url,
        services.mqtt_url,
        data_dir,
        FLEETCARE_WEBHOOKS_ALLOW_PRIVATE=str(settings.webhooks_allow_private).lower(),
    )
    supervisor = Supervisor(env, data_dir / "logs")
    stop = threading.Event()
    workers.callback(supervisor.stop)
    workers.callback(stop.set)

    own = sorted(extra_fleets or {})
    with connect(services.database_url) as conn:
        active = active_version_ids(conn)
        lab = fleet_repo.find_customer_by_slug(conn, TRAINING_FLEET)
        with_history = {
            k
            for k in (*DEMO_KINDS, *own)
            if lab is not None and lab.id in fleet_repo.customers_with_assets_of_kind(conn, k)
        }
    plan = first_run_plan(active, DEMO_KINDS, own, with_history)
    wait_for_models: Callable[[], None] | None = None
    if plan.train:
        missing = plan.train
        typer.echo(
            f"fleetcare: no active model for {', '.join(missing)}: simulating "
            f"{history} lifetimes per kind, then training each kind (first run only)"
        )
        if plan.own_history:  # kinds of --fleet: the generic process, from their definitions
            supervisor.run_step("history-own-kinds", "simulate",
                                *own_history_args(plan.own_history, history))  # fmt: skip
        if plan.built_in_history:
            supervisor.run_step(
                "history", "simulate", "--customer", TRAINING_FLEET,
                *simulate_args(DEMO_HISTORY_FLEET), "--history", str(history), "--duration", "0",
            )  # fmt: skip
        with connect(services.database_url) as conn:
            fleet_service.mark_internal(
                conn, TRAINING_FLEET
            )  # not a customer's: out of the overview
        # the kinds train in parallel while the rest of the loop starts; the fleets start
        # once every kind has a model
        trainings = start_training(supervisor, missing)
        typer.echo(
            f"fleetcare: training {', '.join(missing)} in parallel; progress below and in "
            f"{supervisor.log_dir / 'train-<kind>.log'}"
        )
        wait_for_models = follow_training(
            supervisor, trainings, typer.echo, interactive=sys.stdout.isatty()
        )
    for fleet in DEMO_FLEETS:
        supervisor.run_step(f"register {fleet.customer}", "simulate", *fleet.simulate_args(),
                            "--duration", "0")  # fmt: skip

    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    receiver = supervisor.start(
        "demo-receiver",
        argv=[sys.executable, "-m", "uvicorn", "--factory", "api.demo_receiver:app_from_env",
              "--host", "127.0.0.1", "--port", str(receiver_port), "--log-level", "warning"],
        restart=True,
    )  # fmt: skip
    wait_for_port("127.0.0.1", receiver_port, 30, receiver.proc, "demo receiver")
    prepare_loop(services.database_url, data_dir, receiver_url, SystemClock())
    keys = loop_keys(services.database_url, data_dir)

    # one ingestor: see docs/telemetry.md
    supervisor.start("ingest", "ingest", "--no-shared", restart=True)
    supervisor.start("score", "score", restart=True)
    supervisor.start("dispatch", "dispatch", restart=True)
    supervisor.start("webhooks", "webhooks", restart=True)
    # drift checks, weekly retraining
    supervisor.start("models-watch", "models", "watch", restart=True)
    if wait_for_models is not None:
        wait_for_models()
    for fleet in DEMO_FLEETS:
        supervisor.start(
            f"simulate-{fleet.customer}", "simulate", *fleet.simulate_args(),
            "--speedup", str(speedup), "--technician",
            env={"FLEETCARE_API_URL": api_url,
                 "FLEETCARE_API_KEY": keys[f"{fleet.customer}-technician"]},
        )  # fmt: skip
    if extra_fleets:
        supervisor.start(
            f"simulate-{OWN_FLEET}", "simulate", *own_fleet_args(extra_fleets),
            "--speedup", str(speedup),
        )  # fmt: skip
        fleets = ", ".join(f"{n} {k}" for k, n in sorted(extra_fleets.items()))
        typer.echo(f"fleetcare: simulating {fleets} for customer {OWN_FLEET} (generic process)")
    courier = Courier(ProductAPI(api_url, keys["courier"]), SystemClock(), speedup)
    targets: list[Callable[[], None]] = [lambda: courier.run(stop), lambda: watch(supervisor, stop)]
    for fleet in DEMO_FLEETS:
        for desk in desks_for(fleet.assets) if f"{fleet.customer}-ops" in keys else []:
            desk_api = ProductAPI(api_url, keys[f"{fleet.customer}-ops"])
            # positions from telemetry: a tracker per carrier publishes them over MQTT
            feed = PositionFeed(desk_api, services.mqtt_url, settings.topic_root, data_dir)
            ops = desk(desk_api, ProductAPI(api_url, keys["courier"]), SystemClock(), feed=feed)
            targets.append(lambda ops=ops: ops.run(stop))  # type: ignore[misc]
    for target in targets:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
    return receiver_url
