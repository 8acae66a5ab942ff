"""The ``freshrec`` command: demo, run, serve, catalogue, report, recs, eval, replay, bench."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import orjson

from flows.run import cmd_run, fail
from flows.settings import SERVE, SERVE_ONLY, Settings
from operators.datasets import SYNTHETIC

EXAMPLES = {
    "demo": "freshrec demo                      # synthetic stream, embedded Redis\n"
    "  freshrec demo --data ratings.csv   # a MovieLens / CSV / JSONL log",
    "run": "freshrec run --kafka 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/0 --recovery-dir /var/lib/freshrec\n"
    "  freshrec run --processes 2 --partitions 2          # two processes on this machine\n"
    "  freshrec run --process-id 0 --addresses 'a:2101;b:2101;c:2101'   # on machine a (1 on b, 2 on c)\n"
    "  FRESHREC_KAFKA=broker:9092 freshrec run --kafka-config security_protocol=SASL_SSL,sasl_mechanism=PLAIN",
    "serve": "freshrec serve --port 8000 --redis-url redis://127.0.0.1:6379/0 --kafka 127.0.0.1:9092\n"
    "  freshrec serve --host 0.0.0.0 --api-keys-file /etc/freshrec/keys --api-reads key\n"
    "  curl -s localhost:8000/recommend/42?k=5; open http://127.0.0.1:8000/ for the console",
    "catalogue": "freshrec catalogue load ../shared/data/ml-latest-small/movies.csv --kafka 127.0.0.1:9092\n"
    "  freshrec catalogue load items.jsonl --items-topic shop.items",
    "report": "freshrec report --data events.jsonl --by day,list --plot bench/out/report.png\n"
    "  freshrec report --kafka 127.0.0.1:9092 --topic freshrec.events --since 2026-12-01 --by list,category "
    "--items movies.csv --json",
    "recs": "freshrec recs 42 --k 10 --redis-url redis://127.0.0.1:6379/0",
    "eval": "freshrec eval --data ../shared/data/ml-latest-small/ratings.csv --json",
    "bench": "freshrec bench --quick --json      # starts Kafka and Redis itself\n"
    "  freshrec bench --catalogue --quick --json\n"
    "  freshrec bench --scale --json\n"
    "  freshrec bench --rerank --json\n"
    "  freshrec bench --core --json      # stages 1-6 of bench/system.py\n"
    "  freshrec bench --api --json       # the HTTP API under oha\n"
    "  freshrec bench --kafka 127.0.0.1:9092 --redis-url redis://127.0.0.1:6379/0 --runs 5",
    "replay": "freshrec replay --synthetic --kafka 127.0.0.1:9092 --rate 5000 --limit 100000\n"
    "  freshrec replay --synthetic --shoppers 10 --rate 1000 --redis-url redis://127.0.0.1:6379/0  # and clicks\n"
    "  freshrec replay events.jsonl --kafka 127.0.0.1:9092 --rate 0",
}


def cmd_recs(args: argparse.Namespace) -> int:
    """Print what an app reads for a user (the popular list for an unknown user)."""
    from state.redis_store import RedisUnavailable, connect, read_recs

    try:
        s = Settings.from_args(args)
        client = connect(s.redis_url)
    except (RedisUnavailable, ValueError) as ex:
        return fail(str(ex))
    exclude = [x for x in (args.exclude or "").split(",") if x]
    doc = read_recs(client, args.user, s.namespace, args.k, exclude)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The HTTP API and the console, until interrupted."""
    import uvicorn

    from flows.api import create_app

    try:
        s = Settings.from_args(args)
        create_app(s)  # a bad setting fails here, in one line, before any worker starts
    except (ValueError, OSError) as ex:
        return fail(str(ex))
    # Each worker process makes its app from the environment (uvicorn's factory), so flags become FRESHREC_*.
    os.environ.update(s.to_env())
    uvicorn.run(
        "flows.api:from_env",
        factory=True,
        host=s.host,
        port=s.port,
        workers=s.http_workers,
        access_log=False,  # a line per request would cost more than the request; metrics count them instead
        proxy_headers=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
    return 0


def cmd_catalogue(args: argparse.Namespace) -> int:
    """Produce a catalogue file (CSV or JSONL) to the compacted items topic."""
    from operators.catalogue import load
    from operators.kafka_io import ServiceError

    try:
        s = Settings.from_args(args)
        sent, problems = load(args.path, s.kafka, s.items_topic, s.kafka_extra())
    except (ServiceError, OSError, ValueError) as ex:
        return fail(str(ex))
    for line in problems[:20]:
        print(f"freshrec: skipped {line}", file=sys.stderr)
    print(f"{sent:,} items sent to {s.items_topic} on {s.kafka}; {len(problems):,} rows skipped")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Impressions, click-through, conversion and coverage of what was shown, from a log or a topic."""
    from flows.report import ReportError, plot, read_topic, report, table, when
    from operators.catalogue import read_items
    from operators.datasets import DataError, jsonl_records
    from operators.kafka_io import ServiceError
    from operators.parse import Rejected

    if bool(args.data) == bool(args.kafka):
        return fail("report reads either --data LOG or --kafka HOST:PORT --topic T")
    try:
        since, until = when(args.since), when(args.until)
        categories: dict[str, str] = {}
        if args.items:
            for _, _, got in read_items(args.items):
                if not isinstance(got, Rejected):
                    categories[got.item] = got.category
        by = tuple(g for g in args.by.split(",") if g)
        if args.data:
            records = jsonl_records(args.data)
        else:
            s = Settings.from_args(args)
            records = read_topic(s.kafka, s.topic, since, until, s.kafka_extra())
        doc = report(records, by, args.attribution_window_s, categories, len(categories) or None, since, until)
    except (ReportError, DataError, ServiceError, OSError, ValueError) as ex:
        return fail(str(ex))
    print(table(doc))
    print(f"({doc['records']:,} records, attribution window {doc['window_s']:.0f} s, {doc['seconds']} s)")
    if args.plot:
        plot(doc, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        print(orjson.dumps(doc).decode())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(args.data, args.format, args.events, args.rate)


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.evaluate import run_eval
    from operators.datasets import DataError

    try:
        config = Settings.from_args(args).model_config()
    except ValueError as ex:
        return fail(str(ex))
    try:
        return run_eval(
            args.data,
            args.format,
            args.k,
            args.json,
            args.plot,
            args.batch_every,
            args.ablations,
            args.items,
            args.synthetic,
            args.seed,
            config,
        )
    except DataError as ex:
        return fail(str(ex))


def cmd_replay(args: argparse.Namespace) -> int:
    from bench.replay import run_replay
    from operators.datasets import DataError
    from operators.kafka_io import ServiceError
    from operators.synthetic import SyntheticConfig

    if not args.synthetic and not args.path:
        return fail("replay needs a PATH or --synthetic")
    if args.shoppers and not args.synthetic:
        return fail("--shoppers simulate the users of --synthetic (their hidden tastes); add --synthetic")
    try:
        s = Settings.from_args(args)
        extra = s.kafka_extra()
    except (ValueError, OSError) as ex:
        return fail(str(ex))
    synthetic = None
    if args.synthetic:
        synthetic = SyntheticConfig(
            users=args.users,
            items=args.items,
            topics=args.topics,
            zipf=args.zipf,
            events=10**12,
            seed=args.seed,
            cover=args.cover_users,
        )
    shoppers = None
    if args.shoppers and synthetic is not None:
        from bench.shoppers import Shoppers

        shoppers = Shoppers(synthetic, s.redis_url, s.namespace, every=args.shoppers, seed=args.seed)
    try:
        return run_replay(
            s.kafka,
            s.topic,
            extra,
            s.partitions,
            args.path,
            args.format,
            synthetic,
            args.rate,
            args.limit,
            args.loop,
            shoppers,
        )
    except (DataError, ServiceError) as ex:
        return fail(str(ex))


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.system import run_bench

    stages = ("catalogue", "scale", "core", "api", "ctr", "rerank", "live")
    only = next((name for name in stages if getattr(args, name)), "")
    return run_bench(args.quick, args.json, args.kafka, args.redis_url, args.runs, args.out, args.results, only)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freshrec", description="Real-time recommendations from Kafka events into Redis."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="examples:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "Run the whole flow on embedded defaults: synthetic stream, embedded Redis.")
    p.add_argument("--data", help="a MovieLens u.data / ratings.csv, CSV or JSONL log instead of the synthetic stream")
    p.add_argument("--format", default="auto", choices=("auto", "movielens", "csv", "jsonl"))
    p.add_argument("--events", type=int, default=60_000, help="synthetic events (default 60000)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages per second (0: as fast as the flow goes; default: 1000 for --data, 0 for the synthetic stream)",
    )

    p = add("run", cmd_run, "Consume a Kafka topic and keep every user's list in Redis current.")
    Settings.add_arguments(p, exclude=SERVE_ONLY)

    p = add("serve", cmd_serve, "The HTTP API (recommendations, events) and the web console.")
    Settings.add_arguments(p, only=SERVE)

    p = add("catalogue", cmd_catalogue, "Load an item catalogue (CSV or JSONL) into the compacted items topic.")
    p.add_argument("action", choices=("load",))
    p.add_argument("path", help="CSV with a header (item or movieId, title, category, tags or genres) or JSONL")
    Settings.add_arguments(p, only=("kafka", "items_topic", "kafka_config", "kafka_config_file"))

    p = add("report", cmd_report, "What recommendations earned: impressions, CTR, conversion, value, coverage.")
    p.add_argument("--data", help="a JSONL log of events and impressions")
    p.add_argument("--kafka", help="read the topic on this broker instead (HOST:PORT)")
    p.add_argument("--since", help="from this time (seconds since the epoch, or ISO: 2026-12-01, 2026-12-01T10:00)")
    p.add_argument("--until", help="up to this time (excluded)")
    p.add_argument("--by", default="list", help="groups, comma-separated: day, list, category (default list)")
    p.add_argument("--items", help="catalogue file (CSV or JSONL, as `freshrec catalogue load`) for categories")
    p.add_argument(
        "--attribution-window-s", type=float, default=1800.0, help="seconds from an impression to a credited click"
    )
    p.add_argument("--json", action="store_true", help="last line: the report as one JSON object")
    p.add_argument("--plot", help="PNG of click-through by group")
    Settings.add_arguments(p, only=("topic", "kafka_config", "kafka_config_file"))

    p = add("recs", cmd_recs, "Print what an app reads for USER (popular list for an unknown user).")
    p.add_argument("user")
    p.add_argument("--k", type=int, default=None, help="at most this many items")
    p.add_argument("--exclude", help="comma-separated items to leave out")
    Settings.add_arguments(p, only=("redis_url", "namespace"))

    p = add("eval", cmd_eval, "Prequential quality of the model and baselines on a log, in-process.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a log: MovieLens, CSV (user,item[,rating|type][,timestamp]) or JSONL")
    src.add_argument(
        "--synthetic",
        choices=SYNTHETIC,
        help="a synthetic log: stream (stable tastes), shop (sessions, view/cart/purchase), clicks (sessions as users)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle that orders events of equal timestamp")
    p.add_argument("--format", default="auto", choices=("auto", "movielens", "csv", "jsonl"))
    p.add_argument("--k", type=int, default=10, help="list length of the main hit-rate (default 10)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
    p.add_argument("--plot", default="bench/out/eval_hr.png", help="PNG of HR@k over the stream")
    p.add_argument("--batch-every", type=int, default=5000, help="events between retrains of the batch MF baseline")
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also freshrec without its MF, co-occurrence or popularity, with fixed position weights, with the"
        " session setting (window 1, cooc_hop 2) and with the lasting-tastes setting (mf_loss bpr, lr 0.5,"
        " negatives 5, window 15)",
    )
    p.add_argument(
        "--items",
        default="",
        help="a catalogue file (CSV or JSONL; MovieLens movies.csv as is): its items and their content features",
    )
    Settings.add_arguments(p, only=("config",), model=True)

    p = add("replay", cmd_replay, "Produce a log or a synthetic stream to Kafka at a target rate.")
    p.add_argument("path", nargs="?")
    p.add_argument("--synthetic", action="store_true", help="a seeded synthetic stream instead of a file")
    p.add_argument("--format", default="auto", choices=("auto", "movielens", "csv", "jsonl"))
    p.add_argument("--rate", type=float, default=1000.0, help="events per second (0: as fast as possible)")
    p.add_argument("--limit", type=int, default=0, help="stop after this many events (0: all)")
    p.add_argument("--loop", action="store_true", help="start over at the end of the input")
    p.add_argument("--seed", type=int, default=42, help="seed of --synthetic")
    p.add_argument("--users", type=int, default=100_000, help="users of --synthetic (default 100000)")
    p.add_argument("--items", type=int, default=10_000, help="catalogue of --synthetic (default 10000)")
    p.add_argument("--topics", type=int, default=50, help="taste topics of --synthetic (default 50)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of item popularity in --synthetic")
    p.add_argument(
        "--cover-users",
        action="store_true",
        help="with --synthetic: the first USERS events visit every user once (state for the whole population)",
    )
    p.add_argument(
        "--shoppers",
        type=int,
        default=0,
        metavar="N",
        help="with --synthetic: one event in N, its user reads their list from Redis, sends an impression "
        "and the clicks it earns (0: off)",
    )
    Settings.add_arguments(
        p, only=("kafka", "topic", "kafka_config", "kafka_config_file", "partitions", "redis_url", "namespace")
    )

    p = add(
        "bench", cmd_bench, "Throughput, freshness, read latency and memory on real services, beside a naive pipeline."
    )
    p.add_argument("--quick", action="store_true", help="one run, short stages")
    stage = p.add_mutually_exclusive_group()
    stage.add_argument("--catalogue", action="store_true", help="only the large-catalogue stage (10k, 100k, 1M items)")
    stage.add_argument("--scale", action="store_true", help="only the scale-out stage (1 and 2 processes)")
    stage.add_argument(
        "--core", action="store_true", help="only throughput, freshness, reads, naive loop, memory and restart"
    )
    stage.add_argument("--api", action="store_true", help="only the HTTP API under oha (GET /recommend, POST /events)")
    stage.add_argument("--ctr", action="store_true", help="only the click-through of simulated shoppers")
    stage.add_argument(
        "--rerank", action="store_true", help="only a rules change re-ranking 100k users at 1,000 events/s"
    )
    stage.add_argument(
        "--live", action="store_true", help="only the live hit-rate at 1,000 events/s against eval's on the same events"
    )
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the headline figures")
    p.add_argument("--runs", type=int, default=None, help="repetitions to take the median of (default 3, --quick 1)")
    p.add_argument("--kafka", help="use this broker instead of starting one")
    p.add_argument("--redis-url", help="use this Redis instead of starting one")
    p.add_argument("--out", default="bench", help="directory for the PNG plots (default bench)")
    p.add_argument(
        "--results", default="bench/RESULTS.md", help="Markdown file the figures are appended to ('' for none)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every failed reconnect; freshrec reports outages itself, once.
    for noisy in ("kafka", "bytewax"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
