"""The labelling loop's command line (the make targets call it).

python -m labeling start                  # make label: Label Studio + the project
python -m labeling stop                   # make label-stop
python -m labeling import --folder DIR    # tasks with pre-annotations from a folder
python -m labeling import --bucket        # ... from monitoring/images/ in the data bucket
python -m labeling backend                # the ML backend on 127.0.0.1:9090, connected to the project
python -m labeling export                 # make label-export
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from labeling import service
from labeling.client import LabelStudio, LabelStudioError
from labeling.project import ClassListError, ensure_project, model_classes

DEFAULT_SERVICE_URL = "http://127.0.0.1:3000"


def _start(args: argparse.Namespace) -> None:
    service.start(state=args.state_dir, port=args.port)
    with LabelStudio.local(args.state_dir) as ls:
        try:
            classes = model_classes(args.model_dir)
        except ClassListError as exc:
            print(f"no project yet: {exc}")
            return
        project, action = ensure_project(ls, classes)
        print(f"project {project['id']} ({action}): {ls.url}/projects/{project['id']}/data")
        print(f"  choices: {', '.join(classes)}, none of these")


def _project(ls: LabelStudio, model_dir: Path) -> dict:
    project, _ = ensure_project(ls, model_classes(model_dir))
    return project


def _import(args: argparse.Namespace) -> None:
    from labeling import tasks

    model_version = args.model_version or tasks.served_model_tag()
    predict = functools.partial(tasks.predict_batch, args.service_url)
    with LabelStudio.local(args.state_dir) as ls:
        project = _project(ls, args.model_dir)
        sources = []
        if args.folder:
            sources += [(str(folder), tasks.folder_images(folder)) for folder in args.folder]
        if args.bucket:
            sources.append(_bucket_source(args.prefix))
        for name, items in sources:
            report = tasks.import_images(
                ls, project["id"], items, predict=predict, model_version=model_version
            )
            print(f"{name}: {report}")
        print(
            f"sort by prediction score ascending in {ls.url}/projects/{project['id']}/data to label the "
            "least certain images first"
        )


def _bucket_source(prefix: str) -> tuple[str, object]:
    """The data bucket (the DVC remote's), through the emulator when `make bucket-start` runs it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from labeling.tasks import bucket_images
    from local import bucket

    _, name = bucket.remote_bucket(Path("."))
    emulator = bucket.running(bucket.state_dir())
    if emulator:
        client = storage.Client(
            project=bucket.PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator.endpoint},
        )
    else:
        client = storage.Client()
    return f"gs://{name}/{prefix}", bucket_images(name, prefix, client=client)


def _backend(args: argparse.Namespace) -> None:
    """Serve the adapter in the foreground (uvicorn handles Ctrl-C and SIGTERM) and connect it to the
    project from a helper thread once it listens: Label Studio calls /health and /setup on connecting."""
    import threading
    import time

    import uvicorn

    from labeling import tasks
    from labeling.backend import HOST, connect, create_app

    ls = LabelStudio.local(args.state_dir)
    project = _project(ls, args.model_dir)
    model_version = args.model_version or tasks.served_model_tag()
    app = create_app(
        fetch=ls.fetch,
        predict=functools.partial(tasks.predict_batch, args.service_url),
        model_version=model_version,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=args.backend_port, log_level="warning"))
    url = f"http://{HOST}:{args.backend_port}"
    failed: list[Exception] = []

    def connect_when_listening() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.1)
        try:
            _, added = connect(ls, project["id"], url)
        except LabelStudioError as exc:
            failed.append(exc)
            server.should_exit = True
            return
        print(
            f"ML backend on {url} ({'connected to' if added else 'already connected to'} project "
            f"{project['id']}), forwarding to {args.service_url}; Ctrl-C ends it",
            flush=True,
        )

    threading.Thread(target=connect_when_listening, daemon=True).start()
    server.run()
    if failed:
        raise failed[0]


def _export(args: argparse.Namespace) -> int:
    from labeling import export_cli

    return export_cli.main(args.state_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labeling", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir", type=Path, help="local state folder (default: $ORBIT_STATE_DIR or .orbit)"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("model"), help="the trained model's folder")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start Label Studio and create/update the project")
    start.add_argument(
        "--port", type=int, help=f"port (default: ${service.PORT_ENV} or {service.DEFAULT_PORT})"
    )
    commands.add_parser("stop", help="stop the Label Studio that start started")
    commands.add_parser("status", help="is it running, and where")
    for name, helptext in (
        ("import", "import tasks with pre-annotations"),
        ("backend", "run the ML backend"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument(
            "--service-url", default=DEFAULT_SERVICE_URL, help="the BentoML service (make serve)"
        )
        sub.add_argument(
            "--model-version", help="the served model's tag (default: newest in the BentoML store)"
        )
        if name == "import":
            sub.add_argument("--folder", type=Path, action="append", help="a folder of images (repeatable)")
            sub.add_argument("--bucket", action="store_true", help="also the prediction log's images")
            sub.add_argument("--prefix", default="monitoring/images/", help="bucket prefix of those images")
        else:
            sub.add_argument("--backend-port", type=int, default=9090)
    commands.add_parser("export", help="annotations into data/raw, then dvc add (make label-export)")
    return parser


def subcommands() -> set[str]:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(commands.choices)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            _start(args)
        elif args.command == "stop":
            service.stop(state=args.state_dir)
        elif args.command == "status":
            current = service.running(service.paths(args.state_dir))
            print(f"running at {current.url} (pid {current.pid})" if current else "not running")
            return 0 if current else 1
        elif args.command == "import":
            if not (args.folder or args.bucket):
                parser.error("import needs --folder DIR and/or --bucket")
            _import(args)
        elif args.command == "backend":
            _backend(args)
        else:
            return _export(args)
    except (service.LabelStudioServiceError, LabelStudioError, ClassListError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
