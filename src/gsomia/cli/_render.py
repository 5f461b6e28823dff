"""How the CLI shows core values: JSON shapes scripts rely on, and rich text for people."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gsomia._codec import agreement_json, decision_json, party_json, state_json
from gsomia.core.assumptions import Assumption
from gsomia.core.lifecycle import AgreementState, Status
from gsomia.core.policy import ReleaseDecision
from gsomia.demo.scenario import NetStep, Step

__all__ = [
    "agreement_json",
    "decision_json",
    "party_json",
    "print_decision",
    "print_demo",
    "print_state",
    "state_json",
]


def step_json(step: Step) -> dict[str, Any]:
    return {
        "at": step.at.isoformat(),
        "title": step.title,
        "detail": step.detail,
        "what_if": step.what_if,
        "gsomia": state_json(step.gsomia),
        "flows": [{"flow": flow.name, **decision_json(d)} for flow, d in step.decisions],
    }


_STATUS_STYLE = {
    Status.NOT_IN_FORCE: "dim",
    Status.IN_FORCE: "green",
    Status.TERMINATION_NOTIFIED: "yellow",
    Status.NOTICE_SUSPENDED: "cyan",
    Status.TERMINATED: "red",
}


def print_state(console: Console, state: AgreementState, *, what_if: bool = False) -> None:
    style = _STATUS_STYLE[state.status]
    prefix = "[magenta]what-if[/] " if what_if else ""
    status = f"[{style}]{state.status.value}[/]"
    console.print(f"{prefix}[bold]{escape(state.agreement)}[/] at {state.at.isoformat()}: {status}")
    if state.term_end:
        console.print(f"  term ends        {state.term_end.isoformat()}")
    if state.notice_deadline:
        console.print(
            f"  notice deadline  {state.notice_deadline.isoformat()} (notice must be given before it)"
        )
    console.print(f"  {escape(state.explanation)}")


def _why(decision: ReleaseDecision) -> str:
    if decision.allowed and decision.marking is not None:
        return f"under {decision.agreement}; the recipient marks it {decision.marking.text}"
    failed = decision.failed()
    return failed[0].reason if failed else "refused"


def print_decision(
    console: Console, decision: ReleaseDecision, assumptions: Iterable[Assumption] = ()
) -> None:
    verdict = "[bold green]ALLOWED[/]" if decision.allowed else "[bold red]REFUSED[/]"
    console.print(
        f"{verdict} {' → '.join(decision.route)} at {decision.at.isoformat()}"
        + (f" under {decision.agreement}" if decision.agreement else "")
    )
    table = Table("rule", "", "reason", show_lines=False)
    table.columns[2].overflow = "fold"
    for check in decision.checks:
        table.add_row(check.rule, "[green]✔[/]" if check.passed else "[red]✘[/]", escape(check.reason))
    console.print(table)
    if decision.marking is not None:
        console.print(
            f"recipient's marking (Art. 4): [bold]{escape(decision.marking.text)}[/] "
            f"({decision.marking.alias}, {decision.marking.gloss})"
        )
    for assumption in assumptions:
        console.print(f"[yellow]{escape(assumption.sentence)}[/]")


def _flow_table() -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _step_head(console: Console, step: Step | NetStep, last_state: str) -> str:
    """The step's instant, title and detail, and GSOMIA's state (in full only when it changed)."""
    head = "[magenta]WHAT-IF[/] " if step.what_if else ""
    console.rule(f"{head}[bold]{step.at.isoformat()}[/]  {escape(step.title)}", align="left")
    console.print(f"[dim]{escape(step.detail)}[/]")
    style = _STATUS_STYLE[step.gsomia.status]
    state = f"{step.gsomia.status.value}:{step.gsomia.since}"
    if state != last_state or step.what_if:
        console.print(f"GSOMIA: [{style}]{step.gsomia.status.value}[/] — {escape(step.gsomia.explanation)}")
    else:
        console.print(f"GSOMIA: [{style}]{step.gsomia.status.value}[/] (unchanged)")
    return state


def print_demo(console: Console, steps: list[Step]) -> None:
    console.print(
        "[bold]gsomia demo[/]: the ROK–Japan GSOMIA and TISA, 2014–2023, replayed through the release engine."
    )
    console.print("At each event, five flows are decided again. ✔ allowed, ✘ refused, with the reason.\n")
    previous: dict[str, bool] = {}
    last_state = ""
    for step in steps:
        last_state = _step_head(console, step, last_state)
        table = _flow_table()
        for flow, decision in step.decisions:
            changed = flow.name in previous and previous[flow.name] != decision.allowed
            mark = "[green]✔[/]" if decision.allowed else "[red]✘[/]"
            note = " [bold yellow](changed)[/]" if changed and not step.what_if else ""
            table.add_row(mark, escape(flow.name) + note, escape(_why(decision)))
            if not step.what_if:
                previous[flow.name] = decision.allowed
        console.print(table)
        console.print()


def net_step_json(step: NetStep) -> dict[str, Any]:
    return {
        "at": step.at.isoformat(),
        "title": step.title,
        "detail": step.detail,
        "what_if": step.what_if,
        "gsomia": state_json(step.gsomia),
        "flows": [
            {
                "flow": o.flow.name,
                "route": [o.flow.sender, *o.flow.via, o.flow.recipient],
                "allowed": o.outcome == "delivered",
                "outcome": o.outcome,
                "reason": o.reason,
                "marking": o.marking,
            }
            for o in step.outcomes
        ],
    }


_OUTCOME = {
    "delivered": "[green]✔ crossed[/]",
    "refused": "[red]✘ never left[/]",
    "undeliverable": "[yellow]✘ stopped[/]",
}


def print_net_demo(console: Console, steps: list[NetStep]) -> None:
    console.print(
        "[bold]gsomia demo[/]: 2014–2023 replayed over three real nodes (KOR, JPN, USA) on loopback."
    )
    console.print("At each event every flow is a real item, released, sealed (COSE), sent over HTTP, opened,")
    console.print("decided again by the receiver, stored and receipted — or refused, with the reason.\n")
    last_state = ""
    for step in steps:
        last_state = _step_head(console, step, last_state)
        table = _flow_table()
        for o in step.outcomes:
            why = f"{o.reason}; labels {o.marking}" if o.marking else o.reason
            table.add_row(_OUTCOME[o.outcome], escape(o.flow.name), escape(why))
        console.print(table)
        console.print()


def print_duties(out: Console, lines: list[tuple[str, str]]) -> None:
    """The duties after delivery (the demo's last part): one line per duty carried out."""
    out.print("\n[bold]After delivery[/]: the duties, on three fresh nodes (2024-03-01, all in force)")
    for duty, what in lines:
        out.print(f"  [cyan]{duty:<32}[/] {what}")
