"""``faas``: the entry point (the console script), the global options, ``login`` and ``logout``.

``main`` runs Click without its standalone mode so that every failure ends here: a CliError or
an API error prints its words to stderr and exits with its code (cli/errors.py), never with a
Python traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cli import __version__, config
from cli.client import Api
from cli.commands.fn import fn
from cli.commands.releases import alias, rollout, version
from cli.commands.spec import spec
from cli.commands.triggers import trigger
from cli.errors import EXIT_CODES_HELP, FAILED, OK, CliError
from cli.state import State


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="The portal's URL (else FAAS_URL, else what `faas login` saved).")
@click.option("--tenant", help="The tenant's slug (else FAAS_TENANT, else the saved one).")
@click.version_option(__version__, prog_name="faas")
@click.pass_context
def cli(ctx: click.Context, url: str | None, tenant: str | None) -> None:
    """The faas portal from the command line: functions, code, deployments, test calls, logs,
    versions, aliases, rollouts, triggers and Fission spec folders, over the REST API with a token
    (FAAS_TOKEN, or `faas login`)."""
    ctx.obj = State(url=url, tenant=tenant)


@cli.command()
@click.option("--url", "login_url", help="The portal's URL, e.g. https://faas.example.com.")
@click.option("--tenant", "login_tenant", help="The tenant's slug.")
@click.option("--token", help="An API token (fpt_...); - reads it from standard input.")
@click.pass_obj
def login(state: State, login_url: str | None, login_tenant: str | None, token: str | None) -> None:
    """Check a token against the portal and save URL, tenant and token (config file, mode 600)."""
    known = config.settings(state.url, state.tenant)
    url = login_url or known.get("url") or click.prompt("Portal URL", default="http://127.0.0.1:8000")
    tenant = login_tenant or known.get("tenant") or click.prompt("Tenant")
    if token == "-":  # noqa: S105  (stdin, not a password)
        token = sys.stdin.readline().strip()
    token = token or click.prompt("API token", hide_input=True)
    profile = config.Profile(url=config.normalized_url(url), tenant=tenant, token=token)
    me = Api(profile).get("me/")
    path = config.save(profile)
    click.echo(f"Logged in to {profile.url} as {me['username']} in {me['tenant']} "
               f"(role {me.get('token_role') or me['role']}); saved to {path}.")  # fmt: skip


@cli.command()
def logout() -> None:
    """Forget the saved URL, tenant and token (delete the config file)."""
    if config.forget():
        click.echo(f"Removed {config.config_path()}.")
    else:
        click.echo("Not logged in: nothing saved.")


for _group in (fn, version, alias, rollout, trigger, spec):
    cli.add_command(_group)


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv); its exit code."""
    try:
        result: Any = cli.main(args=argv, prog_name="faas", standalone_mode=False)
    except click.ClickException as error:  # usage errors (2) and bad parameters
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return FAILED
    except CliError as error:
        click.echo(f"Error: {error.message}", err=True)
        for line in error.lines:
            click.echo(f"  {line}", err=True)
        return error.code
    except KeyboardInterrupt:  # Ctrl-C, e.g. to stop `fn logs --follow`: no traceback
        return OK
    return result if isinstance(result, int) else OK


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
