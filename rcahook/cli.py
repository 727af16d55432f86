"""The command line: parses arguments and dispatches to one function per command.

Command modules are imported inside each command so that `rcahook scan` (run by the
pre-push hook) never pays for the imports of `investigate` or `train`.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from rcahook import __version__
from rcahook.errors import RcahookError, log_crash

FORMATS = click.Choice(["text", "json"])
repo_option = click.option("--repo", "repo", default=".", show_default=True,
                           help="Path of the git repository (bare or not).")
db_option = click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
                         help="Index database (default: <git dir>/rcahook/index.sqlite).")


def _run(command: str, **kwargs) -> None:
    module = importlib.import_module(f"rcahook.commands.{command}")
    code = module.run(**kwargs)
    if code:
        sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rcahook")
def cli() -> None:
    """rcahook: which recent change caused this incident, and which outgoing change is risky."""


@cli.command()
@repo_option
@db_option
@click.option("--rev", "revs", multiple=True, help="Index these revisions (default: HEAD and every branch).")
@click.option("--graph/--no-graph", default=True, show_default=True,
              help="Also record the definitions each commit touches and build the code graph.")
@click.option("--at", default=None, help="Revision of the code graph (default: HEAD).")
# default: indexer.TOUCHED_DEPTH, not imported here (a command's start would load pygit2)
@click.option("--touched-depth", default="500", show_default=True, metavar="N|all",
              help="Record the touched definitions of the N newest commits now ('all': every commit; 0: "
                   "none); older ones are computed when a command first needs them.")
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes for diffs (default: cores).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
def index(**kwargs) -> None:
    """Walk history into the index (incremental; an interrupted run resumes)."""
    _run("index", **kwargs)


@cli.command()
@click.argument("path")
@repo_option
@db_option
@click.option("--at", default="HEAD", show_default=True, help="Revision whose CODEOWNERS applies.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def owners(**kwargs) -> None:
    """Owners of PATH: CODEOWNERS rules and who changed it, weighted toward recent changes."""
    _run("owners", **kwargs)


@cli.command()
@click.argument("commit")
@repo_option
@db_option
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def show(**kwargs) -> None:
    """A commit as rcahook sees it: files, hunks, touched definitions, owners, culprit links."""
    _run("show", **kwargs)


@cli.command()
@repo_option
@db_option
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["fixes", "regression", "introduced", "revert"]),
              help="Only these kinds of link.")
@click.option("--unresolved", is_flag=True, help="Only references that did not resolve to one commit.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def links(**kwargs) -> None:
    """Culprit links mined from commit messages (Fixes:, Regression in, reverts)."""
    _run("links", **kwargs)


@cli.group()
def graph() -> None:
    """Query the code graph (definitions, calls, imports)."""


def _graph_command(name: str, *args):
    def decorate(f):
        for a in reversed(args):
            f = a(f)
        f = repo_option(db_option(click.option("--at", default=None,
                                               help="Revision (default: the indexed graph, HEAD)")(
            click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)(f))))
        return graph.command(name)(f)
    return decorate


@_graph_command("stats")
def graph_stats(**kwargs) -> None:
    """Files, definitions and edges per language."""
    _run("graph", action="stats", **kwargs)


@_graph_command("symbols", click.argument("path"))
def graph_symbols(**kwargs) -> None:
    """Definitions in PATH with their line ranges."""
    _run("graph", action="symbols", **kwargs)


@_graph_command("callers", click.argument("name"))
def graph_callers(**kwargs) -> None:
    """Definitions that call NAME."""
    _run("graph", action="callers", **kwargs)


@_graph_command("neighbors", click.argument("name"),
                click.option("--depth", type=int, default=1, show_default=True))
def graph_neighbors(**kwargs) -> None:
    """Definitions and files within --depth edges of NAME."""
    _run("graph", action="neighbors", **kwargs)


@cli.command()
@click.option("--title", default=None, help="Incident title (required unless --incident gives it).")
@click.option("--description", default=None)
@click.option("--time", "time_", default=None, help="ISO 8601 or 'now' (default: now).")
@click.option("--at", default=None, help="Revision that was running (default: HEAD).")
@click.option("--since", default=None, help="Search commits this recent, e.g. 14d, 36h (default: 14d).")
@click.option("--window", type=int, default=None, help="Search the N most recent commits instead.")
@click.option("--impacted-path", "impacted_paths", multiple=True, help="A path known to be involved.")
@click.option("--service", "services", multiple=True, help="A service named in [tool.rcahook.services].")
@click.option("--stack-trace", "stack_trace", default=None, help="File with a stack trace, or - for stdin.")
@click.option("--incident", "incident_file", type=click.Path(dir_okay=False), default=None,
              help="Incident as JSON or YAML (schema: docs/incident.md); flags override it.")
@click.option("--ranker", type=click.Choice(["features", "election", "logprob"]), default=None,
              help="Stage-2 ranker (default: features, chosen by backtest; see README).")
@click.option("--model", default=None, help="Local Hugging Face model or `rcahook train` output directory.")
@click.option("--llm-url", default=None, help="OpenAI-compatible server (e.g. vLLM) for the LLM rankers.")
@click.option("--llm-model", default=None, help="Model name to request from --llm-url.")
@click.option("--llm-top", type=int, default=40, show_default=True,
              help="How many of the features ranking the LLM re-ranks.")
@click.option("--llm-timeout", type=float, default=None,
              help="Seconds to wait for the model server's answer (default: 10; config llm-timeout).")
@click.option("--llm-connect-timeout", type=float, default=None,
              help="Seconds to wait for a connection to the model server (default: 5).")
@click.option("--max-candidates", type=int, default=None, help="Stage-1 cut (default: 300).")
@click.option("--min-confidence", type=float, default=None,
              help="Below this, say there is no confident suggestion (default: 0.3).")
@click.option("--strict", is_flag=True, help="Fail instead of falling back when the model server is unreachable.")
@click.option("--top", type=int, default=5, show_default=True, help="Suggestions to show.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--no-save", is_flag=True, help="Do not save the investigation for feedback.")
@click.option("--no-update", is_flag=True, help="Do not bring the index up to date first.")
@repo_option
@db_option
def investigate(**kwargs) -> None:
    """Rank the recent changes most likely to have caused an incident."""
    _run("investigate", **kwargs)


@cli.command()
@click.argument("investigation_id", required=False)
@click.option("--root-cause", "root_cause", default=None, help="The commit that caused it.")
@click.option("--not", "not_", multiple=True, help="A suggested commit that did not cause it.")
@click.option("--note", default=None, help="Free text kept with the verdict.")
@click.option("--export", "export", type=click.Path(dir_okay=False), default=None,
              help="Write every verdict as JSONL (for `rcahook train`).")
@click.option("--list", "list_", is_flag=True, help="List saved investigations and verdicts.")
@repo_option
@db_option
def feedback(**kwargs) -> None:
    """Record the responder's verdict on an investigation (never overwritten), or export them."""
    _run("feedback", **kwargs)


@cli.command()
@repo_option
@db_option
@click.option("--window", type=int, default=500, show_default=True)
@click.option("--protocol", type=click.Choice(["1", "1.1"]), default="1", show_default=True,
              help="1.1: v1's investigations plus 'Fixes <sha>' and 'follow-up to <sha>' ones, reported apart.")
@click.option("--track", type=click.Choice(["title", "paths", "null"]), default="title", show_default=True,
              help="null: each title replaced by one about something else (see --null-titles); measures abstention.")
@click.option("--null-titles", type=click.Path(dir_okay=False), default=None,
              help="Null track: titles from another repository, one a line "
                   "(default: this one's, half its history away).")
@click.option("--ranker", "rankers", multiple=True, default=("features",), show_default=True,
              help="Ranker(s) to measure: features, election, logprob, blend, features-default.")
@click.option("--model", default=None)
@click.option("--llm-url", default=None)
@click.option("--llm-model", default=None)
@click.option("--llm-top", type=int, default=40, show_default=True)
@click.option("--blend-weight", type=float, default=0.0, show_default=True,
              help="blend ranker: weight of the model's label log-probability added to the features score "
                   "(0 keeps the features order and records both, for bench/fit_blend.py).")
@click.option("--shuffles", type=click.IntRange(1, 16), default=1, show_default=True,
              help="LLM rankers: prompt orders averaged against position and label bias.")
@click.option("--llm-timeout", type=float, default=None, help="Seconds to wait for the model server's answer.")
@click.option("--llm-connect-timeout", type=float, default=None,
              help="Seconds to wait for a connection to the model server.")
@click.option("--limit", type=int, default=None, help="Only the N most recent investigations.")
@click.option("--sample", type=int, default=None, help="A random sample of N investigations.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--task", type=click.Choice(["rca", "risk"]), default="rca", show_default=True)
@click.option("--split", default=None, help="Risk track: train/test split date (ISO 8601; default: 70%% of history).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Results file (JSONL, written as they come; default under the index dir).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from --output.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write a Markdown report with plots.")
@click.option("--no-update", is_flag=True, help="Do not bring the index up to date first.")
@click.option("-j", "--jobs", type=int, default=None,
              help="Worker processes replaying investigations (default: cores; same results for any N).")
def backtest(**kwargs) -> None:
    """Replay real history (protocol v1, or v1.1) and measure rankers against baselines."""
    _run("backtest", **kwargs)


@cli.command()
@click.argument("range_", metavar="[RANGE]", required=False)
@click.option("--from", "from_", default=None, help="Oldest excluded revision (e.g. the remote's sha).")
@click.option("--to", default=None, help="Newest included revision (default: HEAD).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--fail-above", type=float, default=None,
              help="Exit 3 (a verdict: the push is blocked) when a commit's risk exceeds this.")
@click.option("--max-seconds", type=float, default=None,
              help="Time budget; past it, pass with a warning (default: 20 in hooks, none by hand).")
@click.option("--strict", is_flag=True, help="Internal errors and overruns fail instead of passing.")
@click.option("--hook", "hook", type=click.Choice(["pre-push", "pre-commit-framework"]), default=None,
              hidden=True)
@click.option("--remote", default=None, hidden=True)
@repo_option
@db_option
def scan(**kwargs) -> None:
    """Risk of each outgoing commit becoming an incident's root cause."""
    _run("scan", **kwargs)


@cli.command("install-hook")
@click.option("--uninstall", is_flag=True, help="Remove rcahook's hook and put back the one it chained.")
@repo_option
def install_hook(**kwargs) -> None:
    """Install rcahook as the repository's plain git pre-push hook (an existing one is chained)."""
    _run("install_hook", **kwargs)


@cli.group(invoke_without_command=True)
@click.pass_context
@repo_option
@db_option
@click.option("--base", default=None, help="Base model directory (default: the embedded SmolLM2-135M-Instruct).")
@click.option("--stages", default="cpt,sft,rank", show_default=True)
@click.option("--until", default=None, help="Only history up to this revision (data cut-off).")
@click.option("--before", default=None, help="Only history before this date (ISO 8601).")
@click.option("--output", default=None, help="Output directory (default: models/<repo>-<date>).")
@click.option("--max-steps", type=int, default=None)
@click.option("--lora/--full", default=True, show_default=True)
@click.option("--eval", "eval_", is_flag=True, help="Backtest the investigations after the cut-off.")
@click.option("--eval-sample", type=int, default=None,
              help="Evaluate a seeded random N of those investigations (the LLM rankers take minutes each on CPU).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", default=None, help="Use (edited) datasets from this directory.")
@click.option("--features-only", is_flag=True, help="Only fit the features ranker and risk scorer.")
def train(ctx: click.Context, **kwargs) -> None:
    """Fine-tune a ranking model on the repository's own history (and fit the features scorer)."""
    if ctx.invoked_subcommand is None:
        _run("train", **kwargs)


@train.command("data")
@repo_option
@db_option
@click.option("--until", default=None)
@click.option("--before", default=None)
@click.option("--output", "output", default=None, help="Directory for the JSONL datasets.")
@click.option("--base", default=None, help="Model whose tokenizer packs the CPT corpus and ranks lists.")
@click.option("--instructions", default=None, help="A JSONL instruction set to mix into SFT.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-j", "--jobs", type=int, default=None,
              help="Worker processes writing the SFT examples (default: cores; same rows for any N).")
def train_data(**kwargs) -> None:
    """Write the training datasets as JSONL (inspect, edit, extend)."""
    _run("train_data", **kwargs)


@cli.command()
@click.option("--repo", "repos", multiple=True, metavar="NAME=PATH",
              help="A repository to serve (repeatable; PATH alone: named after its directory). Default: .")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback requires --token-file.")
@click.option("--port", type=int, default=8340, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File whose first line is the token every API call must send (Authorization: Bearer).")
@click.option("--pagerduty-secret-file", "pagerduty_secret_files", multiple=True, type=click.Path(dir_okay=False),
              help="A PagerDuty v3 webhook subscription's signing secret (repeatable, for rotation).")
@click.option("--sentry-secret-file", type=click.Path(dir_okay=False), default=None,
              help="The Sentry integration's client secret (verifies Sentry-Hook-Signature).")
@click.option("--base-url", default=None, help="How clients reach the service, for the URLs it returns "
                                               "(default: from each request's Host).")
@click.option("--update-interval", type=float, default=60, show_default=True,
              help="Seconds between background index updates.")
@click.option("--no-update", is_flag=True, help="Never update the indexes (serve them as they are).")
@click.option("--ranker", type=click.Choice(["features", "election", "logprob"]), default=None,
              help="Stage-2 ranker (default: config, else features).")
@click.option("--model", default=None, help="Local model for the LLM rankers (yours; never a request's).")
@click.option("--llm-url", default=None, help="OpenAI-compatible server for the LLM rankers.")
@click.option("--llm-model", default=None, help="Model name to request from --llm-url.")
@click.option("--min-confidence", type=float, default=None, help="Below this, abstain (default: 0.3).")
@click.option("--max-candidates", type=int, default=None, help="Stage-1 cut (default: 300).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def serve(**kwargs) -> None:
    """HTTP API, alert webhooks and pages for investigations (needs the serve extra; docs/serve.md)."""
    _run("serve", **kwargs)


@cli.group()
def deploy() -> None:
    """Deploy events: what went live where (they bound `rcahook serve`'s investigations)."""


@deploy.command("record")
@repo_option
@click.option("--environment", required=True, help="Environment or service, e.g. prod or prod/billing.")
@click.option("--sha", default=None, help="The deployed commit (default: HEAD).")
@click.option("--time", "time_", default=None, help="When it went live, ISO 8601 (default: now).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def deploy_record(**kwargs) -> None:
    """Record that a commit went live in an environment (run it from the deploy pipeline)."""
    _run("deploy", action="record", **kwargs)


@deploy.command("list")
@repo_option
@click.option("--environment", default=None, help="Only this environment.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def deploy_list(**kwargs) -> None:
    """Deploys recorded, newest first."""
    _run("deploy", action="list", **kwargs)


@cli.command()
@click.option("--cmd", "cmd", required=True,
              help="Command that fails where the bug is, run with the shell in a scratch worktree: exit 0 good, "
                   "125 skip, 1-127 bad (as git bisect run).")
@click.option("--investigation", "investigation_id", default=None,
              help="Rank by a saved investigation (rcahook feedback --list) instead of the incident flags.")
@click.option("--good", default=None, help="A revision where CMD passes (default: the parent of the search "
                                           "space's oldest commit).")
@click.option("--bad", default=None, help="A revision where CMD fails (default: the investigated revision).")
@click.option("--timeout", type=float, default=None, help="Seconds per run; a run past it counts as a skip.")
@click.option("--max-runs", type=int, default=None, help="Stop after N runs and report what is left.")
@click.option("--retries", type=int, default=0, show_default=True,
              help="Re-run a verdict that contradicts the evidence so far, up to K more times per revision.")
@click.option("--no-feedback", is_flag=True, help="Do not save the investigation nor record the culprit.")
@click.option("--title", default=None, help="Incident title (as for investigate).")
@click.option("--description", default=None)
@click.option("--time", "time_", default=None, help="ISO 8601 or 'now' (default: now).")
@click.option("--at", default=None, help="Revision that was running (default: HEAD).")
@click.option("--since", default=None, help="Search commits this recent, e.g. 14d (default: 14d).")
@click.option("--window", type=int, default=None, help="Search the N most recent commits instead.")
@click.option("--impacted-path", "impacted_paths", multiple=True, help="A path known to be involved.")
@click.option("--service", "services", multiple=True, help="A service named in [tool.rcahook.services].")
@click.option("--stack-trace", "stack_trace", default=None, help="File with a stack trace, or - for stdin.")
@click.option("--incident", "incident_file", type=click.Path(dir_okay=False), default=None,
              help="Incident as JSON or YAML (docs/incident.md); flags override it.")
@click.option("--ranker", type=click.Choice(["features", "election", "logprob"]), default=None)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--no-update", is_flag=True, help="Do not bring the index up to date first.")
@repo_option
@db_option
def bisect(**kwargs) -> None:
    """Prove the culprit: run CMD across the suspects, likeliest first, in fewer runs than git bisect."""
    _run("bisect", **kwargs)


@cli.command()
@click.argument("suspect")
@click.option("--cmd", "cmd", required=True, help="Command that fails where the bug is (exit 0: passes).")
@click.option("--bad", default="HEAD", show_default=True, help="The failing revision to revert the suspect on.")
@click.option("--timeout", type=float, default=None, help="Seconds per run.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@repo_option
def verify(**kwargs) -> None:
    """Revert SUSPECT on top of the bad revision in a scratch worktree and run CMD: fixed or not."""
    _run("verify", **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rcahook",
                 standalone_mode=False)
    except RcahookError as e:
        click.echo(f"rcahook: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("rcahook: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except KeyboardInterrupt:
        click.echo("rcahook: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: keep the traceback for the report, show one line
        log = log_crash()
        click.echo(f"rcahook: internal error: {type(e).__name__}: {e} (details in {log}; please report it)",
                   err=True)
        return 70
    return 0
